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
        verdict = self.judge(run, {"p99"})
        self.assertTrue(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status, {"http_req_duration{scenario:mix} p(99)<250": "ok"})
        # The stolen seconds and the ones within reach of them are left out.
        clean = report.load(os.path.join(self.dir, "steady.json"))["clean"]["scenarios"]["mix"]
        self.assertEqual(clean["clean_seconds"], 40 - 6 - report.CLEAN_BEFORE - report.CLEAN_AFTER)
        self.assertEqual(clean["p99"], 5.0)

    def test_slow_seconds_the_host_left_alone_fail(self):
        run = Run(40)
        for i in range(10, 16):
            run.ms[i] = 900.0
        verdict = self.judge(run, {"p99"})
        self.assertFalse(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status, {"http_req_duration{scenario:mix} p(99)<250": "FAIL"})

    def test_errors_fail_whatever_the_steal(self):
        run = Run(40, steal=0.6)
        run.errors[3] = 5
        verdict = self.judge(run, {"errors"})
        self.assertFalse(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status, {"gql_errors{scenario:mix} rate<0.001": "FAIL"})

    def test_a_run_mostly_under_steal_leaves_latency_unjudged_and_says_so(self):
        run = Run(40, ms=900.0, steal=0.4)
        for i in range(30, 40):
            run.steal[i] = 0.0
        verdict = self.judge(run, {"p95", "p99"})
        self.assertTrue(verdict.ok, verdict.lines)
        self.assertEqual(set(verdict.status.values()), {"SKIP"})
        self.assertEqual(verdict.status["http_req_duration{scenario:mix} p(99)<250"], "SKIP")

    def test_k6_failing_for_another_reason_fails(self):
        verdict = self.judge(Run(20), set(), status=107)
        self.assertFalse(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status, {"k6": "FAIL"})

    def test_k6_passing_passes_and_reports_the_clean_share(self):
        verdict = self.judge(Run(20), set(), status=0)
        self.assertTrue(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status, {"k6": "ok"})
        clean = report.load(os.path.join(self.dir, "steady.json"))["clean"]["scenarios"]["mix"]
        self.assertEqual((clean["clean_seconds"], clean["seconds"]), (20, 20))

    def test_without_a_steal_file_a_crossed_latency_threshold_fails(self):
        run = Run(20, ms=900.0)
        run.write(self.dir)
        run.summary(self.dir, {"p99"})
        data = report.load(os.path.join(self.dir, "steady.json"))
        data["clean"] = None
        with open(os.path.join(self.dir, "steady.json"), "w") as f:
            json.dump(data, f)
        verdict = report.gate(self.dir, "steady", 99)
        self.assertFalse(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status, {"http_req_duration{scenario:mix} p(99)<250": "FAIL"})


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
        return report.soak_verdict(directory)

    def test_the_search_index_s_mapped_pages_growing_with_the_data_pass(self):
        # The index's pages 1 -> 12 MiB over the run, the rest flat: all of RSS grows by
        # more than 10% (a bound on all of RSS would fail this run), what the server
        # holds for itself by nothing.
        verdict = self.soak(Run(180), index=lambda t: 1024 + 64 * t)
        self.assertTrue(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status["rss"], "ok")
        self.assertAlmostEqual(verdict.rss_growth, 0.0, places=3)
        self.assertAlmostEqual(verdict.all_rss_growth, 0.101, places=3)

    def test_the_server_s_own_growth_fails_beside_the_search_index(self):
        # 4,000 KiB more held from 100 s on, the index flat: the subtraction hides nothing.
        verdict = self.soak(Run(180), anon=lambda t: 12000 + (4000 if t >= 100 else 0), index=lambda t: 2048)
        self.assertFalse(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status["rss"], "FAIL")
        self.assertAlmostEqual(verdict.rss_growth, 0.133, places=3)

    def test_rss_is_judged_on_the_lowest_sample_of_a_minute(self):
        # A commit's 6 MiB of tables in every other sample of the last minute (its median is
        # 6 MiB up, +20%): what stays is flat, so the soak passes.
        verdict = self.soak(Run(180), anon=lambda t: 12000 + (6144 if t >= 115 and (t // 5) % 2 else 0))
        self.assertTrue(verdict.ok, verdict.lines)
        self.assertAlmostEqual(verdict.rss_growth, 0.0, places=3)
        self.assertIsNone(verdict.all_rss_growth)

    def test_a_rising_floor_fails(self):
        # 4,000 KiB more held from 100 s on (30,000 -> 34,000 KiB of RSS: +13.3%).
        verdict = self.soak(Run(180), anon=lambda t: 12000 + (4000 if t >= 100 else 0))
        self.assertFalse(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status["rss"], "FAIL")
        self.assertAlmostEqual(verdict.rss_growth, 0.133, places=3)

    def test_a_warm_up_s_growth_from_its_cold_start_is_reported_but_not_judged(self):
        # A 5-minute warm-up whose memory grows from 10 to 14 MiB (RSS 27.6 -> 31.6 MiB), then
        # a flat soak: the soak passes, and the cold start's growth is measured beside it,
        # in the judged measure (RSS without the index) when the run recorded the index.
        for index in (None, lambda t: 2048):
            verdict = self.soak(Run(180), anon=lambda t: 14336, warmup=lambda t: 10240 + 4096 * (t >= 150), index=index)
            self.assertTrue(verdict.ok, verdict.lines)
            self.assertAlmostEqual(verdict.rss_growth, 0.0, places=3)
            self.assertAlmostEqual(verdict.warmup_growth, 0.145, places=3)

    def test_drift_is_judged_on_clean_seconds(self):
        run = Run(180)
        for i in range(150, 180, 2):
            run.ms[i], run.steal[i] = 400.0, 0.5
        verdict = self.soak(run)
        self.assertTrue(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status["drift"], "ok")

    def test_a_sustained_rise_on_clean_seconds_fails(self):
        run = Run(180)
        for i in range(120, 180):
            run.ms[i] = 40.0
        verdict = self.soak(run)
        self.assertFalse(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status["drift"], "FAIL")

    def test_a_last_minute_under_steal_is_not_judged(self):
        run = Run(180)
        for i in range(120, 180):
            run.ms[i], run.steal[i] = 40.0, 0.5
        verdict = self.soak(run)
        self.assertTrue(verdict.ok, verdict.lines)
        self.assertEqual(verdict.status["drift"], "SKIP")


if __name__ == "__main__":
    unittest.main()
