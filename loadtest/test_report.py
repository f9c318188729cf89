"""Tests of the load tests' verdicts (report.py): a k6 CSV stream and a steal sampler file
made up second by second, aggregated and judged as scripts/loadtest does.

  .venv/bin/python -m unittest discover -s loadtest      (scripts/test runs it)
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

T0 = 1_700_000_000  # unix seconds of the made-up run's first second
HEADER = "metric_name,timestamp,metric_value,scenario,extra_tags"


def ticks(share, seconds=1.0):
    """Steal ticks that make `share` of all cores' time over `seconds`."""
    return round(share * os.sysconf("SC_CLK_TCK") * report.cores() * seconds)


class Run:
    """One made-up k6 run: per second, request durations (ms) and the host's steal share."""

    def __init__(self, seconds, ms=5.0, steal=0.0, per_second=20):
        self.ms = [ms] * seconds
        self.steal = [steal] * seconds
        self.errors = [0] * seconds
        self.per_second = per_second

    def write(self, directory, name="steady"):
        csv_path = os.path.join(directory, f"{name}.csv")
        with open(csv_path, "w") as f:
            f.write(HEADER + "\n")
            for i, ms in enumerate(self.ms):
                for k in range(self.per_second):
                    stamp = (T0 + i) * 1000 + k * (1000 // self.per_second)
                    f.write(f"http_req_duration,{stamp},{ms},mix,op=sendMessage\n")
                    f.write(f"gql_errors,{stamp},{1 if k < self.errors[i] else 0},mix,op=sendMessage\n")
        steal_path = os.path.join(directory, f"{name}.steal.csv")
        with open(steal_path, "w") as f:
            total = 0
            f.write(f"{T0 - 1}.5,{total}\n")
            for i, share in enumerate(self.steal):
                total += ticks(share)
                f.write(f"{T0 + i}.5,{total}\n")
            f.write("17000")  # the line being written when the file was read
        report.aggregate(csv_path, os.path.join(directory, f"{name}.json"), steal_path)

    def summary(self, directory, crossed, name="steady"):
        """k6's summary export with the named thresholds crossed (True = crossed)."""
        metrics = {
            "http_req_duration{scenario:mix}": {"thresholds": {"p(95)<100": "p95" in crossed, "p(99)<250": "p99" in crossed}},
            "gql_errors{scenario:mix}": {"thresholds": {"rate<0.001": "errors" in crossed}},
            "dropped_iterations": {"thresholds": {"count<50": "dropped" in crossed}},
        }
        with open(os.path.join(directory, f"{name}-summary.json"), "w") as f:
            json.dump({"metrics": metrics}, f)


class GateTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def judge(self, run, crossed, status=99):
        run.write(self.dir)
        run.summary(self.dir, crossed)
        return report.gate(self.dir, "steady", status)

    def test_slow_seconds_under_steal_are_not_held_against_the_server(self):
        run = Run(40)
        for i in range(10, 16):
            run.ms[i], run.steal[i] = 900.0, 0.5
        ok, lines = self.judge(run, {"p99"})
        self.assertTrue(ok, lines)
        self.assertIn("ok   http_req_duration{scenario:mix} p(99)<250", "\n".join(lines))
        # The stolen seconds and the ones within reach of them are left out.
        clean = report.load(os.path.join(self.dir, "steady.json"))["clean"]["scenarios"]["mix"]
        self.assertEqual(clean["clean_seconds"], 40 - 6 - report.CLEAN_BEFORE - report.CLEAN_AFTER)
        self.assertEqual(clean["p99"], 5.0)

    def test_slow_seconds_the_host_left_alone_fail(self):
        run = Run(40)
        for i in range(10, 16):
            run.ms[i] = 900.0
        ok, lines = self.judge(run, {"p99"})
        self.assertFalse(ok, lines)
        self.assertIn("FAIL http_req_duration{scenario:mix} p(99)<250", "\n".join(lines))

    def test_errors_fail_whatever_the_steal(self):
        run = Run(40, steal=0.6)
        run.errors[3] = 5
        ok, lines = self.judge(run, {"errors"})
        self.assertFalse(ok, lines)
        self.assertIn("FAIL gql_errors{scenario:mix} rate<0.001", "\n".join(lines))

    def test_a_run_mostly_under_steal_leaves_latency_unjudged_and_says_so(self):
        run = Run(40, ms=900.0, steal=0.4)
        for i in range(30, 40):
            run.steal[i] = 0.0
        ok, lines = self.judge(run, {"p95", "p99"})
        self.assertTrue(ok, lines)
        text = "\n".join(lines)
        self.assertIn("SKIP http_req_duration{scenario:mix} p(99)<250", text)
        self.assertIn("not judged", text)

    def test_k6_failing_for_another_reason_fails(self):
        ok, lines = self.judge(Run(20), set(), status=107)
        self.assertFalse(ok, lines)

    def test_k6_passing_passes_and_reports_the_clean_share(self):
        ok, lines = self.judge(Run(20), set(), status=0)
        self.assertTrue(ok, lines)
        self.assertIn("20 of 20 seconds", "\n".join(lines))

    def test_without_a_steal_file_a_crossed_latency_threshold_fails(self):
        run = Run(20, ms=900.0)
        run.write(self.dir)
        run.summary(self.dir, {"p99"})
        data = report.load(os.path.join(self.dir, "steady.json"))
        data["clean"] = None
        with open(os.path.join(self.dir, "steady.json"), "w") as f:
            json.dump(data, f)
        ok, lines = report.gate(self.dir, "steady", 99)
        self.assertFalse(ok, lines)


class SoakDriftTest(unittest.TestCase):
    def soak(self, run, anon=lambda t: 12000, warmup=None, index=None):
        directory = tempfile.mkdtemp()
        run.write(directory, "soak")
        if warmup is not None:
            with open(os.path.join(directory, "rss-warmup.csv"), "w") as f:
                f.write("t,unix,rss_kib,anon_kib,connections" + (",index_kib\n" if index else "\n"))
                for t in range(0, 300, 5):
                    mapped = index(t) if index else 0
                    f.write(f"{t},{T0 - 300 + t},{18000 + mapped + warmup(t)},{warmup(t)},10" + (f",{mapped}\n" if index else "\n"))
        with open(os.path.join(directory, "rss.csv"), "w") as f:
            f.write("t,unix,rss_kib,anon_kib,connections" + (",index_kib\n" if index else "\n"))
            for t in range(0, len(run.ms), 5):
                # The index's mapped pages are part of the RSS, as in /proc.
                mapped = index(t) if index else 0
                f.write(f"{t},{T0 + t},{18000 + mapped + anon(t)},{anon(t)},10" + (f",{mapped}\n" if index else "\n"))
        return report.soak_check(directory)

    def test_memory_is_split_into_file_backed_and_the_lowest_anonymous_sample(self):
        # Anonymous memory at 10 MiB with a per-commit block of 4 MiB in every other sample,
        # and 1 MiB more held from 100 s on.
        def anon(t):
            return 10240 + (1024 if t >= 100 else 0) + (4096 if (t // 5) % 2 else 0)

        _, lines = self.soak(Run(180), anon)
        self.assertIn("info RSS by kind: file-backed (median) 17.6 -> 17.6 MiB, anonymous (lowest sample) 10.0 -> 11.0 MiB (+10.0%)", lines)

    def test_the_search_index_s_share_of_the_file_backed_memory_is_reported(self):
        _, lines = self.soak(Run(180), index=lambda t: 1024 + 16 * t)
        self.assertIn("info RSS by kind: file-backed (median) 20.0 -> 20.8 MiB (of which the search index's mapped files 2.4 -> 3.3 MiB)", "\n".join(lines))

    def test_the_search_index_s_mapped_pages_growing_with_the_data_pass_and_are_reported(self):
        # The index's pages 1 -> 12 MiB over the run, the rest flat: all of RSS grows by
        # more than 10% (a bound on all of RSS would fail this run), what the server
        # holds for itself by nothing.
        ok, lines = self.soak(Run(180), index=lambda t: 1024 + 64 * t)
        self.assertTrue(ok, lines)
        text = "\n".join(lines)
        self.assertIn("ok   RSS without the search index (lowest sample of a minute: what stays between the search index's commits): 29.3 MiB around 88 s, 29.3 MiB in the last minute (to 175 s): +0.0%", text)
        self.assertIn("info RSS with the search index's mapped files (not judged: they grow with the data): 34.0 -> 37.5 MiB (+10.1%)", text)

    def test_the_server_s_own_growth_fails_beside_the_search_index(self):
        # 4,000 KiB more held from 100 s on, the index flat: the subtraction hides nothing.
        ok, lines = self.soak(Run(180), anon=lambda t: 12000 + (4000 if t >= 100 else 0), index=lambda t: 2048)
        self.assertFalse(ok, lines)
        self.assertIn("FAIL RSS without the search index (lowest sample of a minute", "\n".join(lines))
        self.assertIn("+13.3% (bound: at most +10%)", "\n".join(lines))

    def test_rss_is_judged_on_the_lowest_sample_of_a_minute(self):
        # A commit's 6 MiB of tables in every other sample of the last minute (its median is
        # 6 MiB up, +20%): what stays is flat, so the soak passes.
        ok, lines = self.soak(Run(180), anon=lambda t: 12000 + (6144 if t >= 115 and (t // 5) % 2 else 0))
        self.assertTrue(ok, lines)
        self.assertIn("ok   RSS (lowest sample of a minute: what stays between the search index's commits): 29.3 MiB around 88 s, 29.3 MiB in the last minute (to 175 s): +0.0%", "\n".join(lines))

    def test_a_rising_floor_fails(self):
        # 4,000 KiB more held from 100 s on (30,000 -> 34,000 KiB of RSS: +13.3%).
        ok, lines = self.soak(Run(180), anon=lambda t: 12000 + (4000 if t >= 100 else 0))
        self.assertFalse(ok, lines)
        self.assertIn("FAIL RSS (lowest sample of a minute", "\n".join(lines))
        self.assertIn("+13.3% (bound: at most +10%)", "\n".join(lines))

    def test_a_warm_up_is_reported_with_the_growth_from_its_cold_start_but_not_judged(self):
        # A 5-minute warm-up whose memory grows from 10 to 14 MiB (RSS 27.6 -> 31.6 MiB), then
        # a flat soak: the soak passes, and the line gives the cold start's figure as well.
        ok, lines = self.soak(Run(180), anon=lambda t: 14336, warmup=lambda t: 10240 + 4096 * (t >= 150))
        self.assertTrue(ok, lines)
        self.assertIn(
            "info warm-up before the soak (not judged, 295 s): 27.6 MiB around 120 s of the cold start, "
            "31.6 MiB in its last minute; from that cold start's 120 s to the soak's end +14.5%",
            lines,
        )

    def test_a_warm_up_with_the_search_index_s_pages_is_reported_in_the_judged_measure(self):
        # As above, with 2 MiB of index pages throughout: the same figures, and the line
        # says which RSS they are.
        ok, lines = self.soak(Run(180), anon=lambda t: 14336, warmup=lambda t: 10240 + 4096 * (t >= 150), index=lambda t: 2048)
        self.assertTrue(ok, lines)
        self.assertIn(
            "info warm-up before the soak (not judged, 295 s; RSS without the search index): 27.6 MiB around 120 s "
            "of the cold start, 31.6 MiB in its last minute; from that cold start's 120 s to the soak's end +14.5%",
            lines,
        )

    def test_the_steal_in_each_rss_window_is_reported(self):
        # 180 s: the reference window is 60 +- 30 s, the last minute 115-175 s (the last
        # sample is at 175 s). Steal at 40% from 120 s on: 55 of the window's 59 sampled
        # seconds, 37%.
        run = Run(180)
        for i in range(120, 180):
            run.steal[i] = 0.4
        _, lines = self.soak(run)
        self.assertIn("info CPU steal in the RSS windows: 0% around 88 s, 37% in the last minute", "\n".join(lines))

    def test_drift_is_judged_on_clean_seconds(self):
        run = Run(180)
        for i in range(150, 180, 2):
            run.ms[i], run.steal[i] = 400.0, 0.5
        ok, lines = self.soak(run)
        self.assertTrue(ok, lines)
        self.assertIn("ok   p95", "\n".join(lines))

    def test_a_sustained_rise_on_clean_seconds_fails(self):
        run = Run(180)
        for i in range(120, 180):
            run.ms[i] = 40.0
        ok, lines = self.soak(run)
        self.assertFalse(ok, lines)
        self.assertIn("FAIL p95", "\n".join(lines))

    def test_a_last_minute_under_steal_is_not_judged(self):
        run = Run(180)
        for i in range(120, 180):
            run.ms[i], run.steal[i] = 40.0, 0.5
        ok, lines = self.soak(run)
        self.assertTrue(ok, lines)
        self.assertIn("SKIP p95 drift not judged", "\n".join(lines))


if __name__ == "__main__":
    unittest.main()
