"""The load tests' numbers: aggregation of k6's sample stream and the report.

  report.py aggregate CSV OUT.json [STEAL.csv]
                                       k6's CSV output (a file or a FIFO) -> per-second series;
                                       with the host's steal sampled each second, also which
                                       seconds it left alone and the latency over those
  report.py gate DIR NAME K6_STATUS    a k6 run's pass/fail from its thresholds, latency
                                       judged on the seconds the host left alone
  report.py soak-check DIR [SLACK_MIB] the soak's pass/fail: errors, RSS, latency drift
  report.py report DIR OUT_DIR         report.md and PNG plots from a run's results

k6 writes about a dozen samples per request; `aggregate` keeps only what the report
uses (request durations, GraphQL errors, subscription delivery, dropped iterations), per
second and per scenario, so a 30-minute soak leaves kilobytes, not gigabytes.

Steal. This runs on a shared 2-core VM whose hypervisor at times takes a third of the CPU
(`steal` in /proc/stat: time the VM wanted to run and was not let). k6 and the server stall
together then, and the tail latency measures the host, not the server: in one CI soak, the
5-s intervals with steal over 20% had per-second p99s up to 670 ms, those under 10% at most
56 ms, and in another (steal sampled each second) the median per-second p95 was 9.0 ms over
the seconds with steal up to 25% and 20.8 ms over the rest. So the latency bounds are judged
on the *clean* seconds, those whose neighbourhood had steal of at most STEAL_LIMIT; errors
and memory are judged on every second; and a run with too few clean seconds says its
latency was not judged instead of passing or failing it.
"""

import csv
import json
import math
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field

STEAL_LIMIT = 0.25  # of all cores' time, per sampled (1-s) interval
# A second is clean when every steal interval overlapping [s - 2, s + 1) is under the limit:
# a request sampled at second s (k6 stamps it at its end) ran during the seconds before it.
CLEAN_BEFORE, CLEAN_AFTER = 2, 1
# Latency is judged when the clean seconds hold this many requests (p99 then rests on the
# five slowest of them).
CLEAN_QUORUM = 500
# The soak's drift check compares the first and last minute when each has this many clean
# seconds.
MINUTE_QUORUM = 10
KEPT = {"http_req_duration", "gql_errors", "ws_delivery", "ws_errors", "ws_events", "dropped_iterations"}
OPS = ["sendMessage", "messages", "unreadSummary", "markChatRead", "searchMessages"]


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (k6 interpolates; close enough here)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def stats(values):
    values = sorted(values)
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": values[-1] if values else None,
    }


def steal_samples(path):
    """(unix seconds, cumulative steal ticks) per line of a sampler file."""
    samples = []
    with open(path) as f:
        for line in f:
            try:
                t, ticks = line.strip().split(",")
                samples.append((float(t), int(ticks)))
            except ValueError:
                continue  # the line being written when the file was read
    return samples


def steal_intervals(samples):
    """(start, end, share of all cores' time the hypervisor took) between consecutive
    (seconds, cumulative steal ticks) samples."""
    return [(a[0], b[0], steal_share(b[0] - a[0], b[1] - a[1])) for a, b in zip(samples, samples[1:]) if b[0] > a[0]]


def steal_total(samples):
    """The share of all cores' time the hypervisor took from the first sample to the last."""
    return steal_share(samples[-1][0] - samples[0][0], samples[-1][1] - samples[0][1])


def clean_seconds(intervals, seconds):
    """{second: (steal share of its worst overlapping interval, clean?)} for unix seconds."""
    verdict = {}
    for s in seconds:
        near = [share for a, b, share in intervals if b > s - CLEAN_BEFORE and a < s + CLEAN_AFTER]
        worst = max(near) if near else None
        verdict[s] = (worst, worst is not None and worst <= STEAL_LIMIT)
    return verdict


def aggregate(source, out_path, steal_path=None):
    durations = defaultdict(list)  # (second, scenario) -> ms
    by_op = defaultdict(list)  # (scenario, op) -> ms
    errors = defaultdict(lambda: [0, 0])  # (second, scenario) -> [failed, total]
    errors_by_op = defaultdict(lambda: [0, 0])
    delivery = defaultdict(list)  # second -> ms
    dropped = defaultdict(int)
    ws = {"ws_errors": 0, "ws_events": 0}
    with open(source, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        m, t, v = col["metric_name"], col["timestamp"], col["metric_value"]
        sc, extra = col["scenario"], col["extra_tags"]
        for row in reader:
            metric = row[m]
            if metric not in KEPT:
                continue
            second = int(float(row[t]) // 1000) if float(row[t]) > 1e11 else int(float(row[t]))
            scenario = row[sc] or "setup"
            value = float(row[v])
            op = ""
            for tag in row[extra].split("&"):
                if tag.startswith("op="):
                    op = tag[3:]
            if op == "setup":
                continue
            if metric == "http_req_duration":
                durations[(second, scenario)].append(value)
                by_op[(scenario, op)].append(value)
            elif metric == "gql_errors":
                errors[(second, scenario)][0] += int(value)
                errors[(second, scenario)][1] += 1
                errors_by_op[(scenario, op)][0] += int(value)
                errors_by_op[(scenario, op)][1] += 1
            elif metric == "ws_delivery":
                delivery[second].append(value)
            elif metric in ws:
                ws[metric] += int(value)
            elif metric == "dropped_iterations":
                dropped[(second, scenario)] += int(value)
    seconds = sorted({s for s, _ in durations} | set(delivery))
    start = seconds[0] if seconds else 0
    samples = steal_samples(steal_path) if steal_path else []
    intervals = steal_intervals(samples)
    steal = clean_seconds(intervals, seconds) if intervals else {}
    series = []
    for (second, scenario), values in sorted(durations.items()):
        row = stats(values)
        row.update({"t": second - start, "scenario": scenario})
        row["errors"], row["requests"] = errors[(second, scenario)]
        if steal:
            row["steal"], row["clean"] = steal[second]
        series.append(row)
    scenarios = defaultdict(dict)
    for (scenario, op), values in sorted(by_op.items()):
        row = stats(values)
        row["errors"] = errors_by_op[(scenario, op)][0]
        scenarios[scenario][op] = row
    for scenario, ops in scenarios.items():
        everything = [v for (s, _), vals in by_op.items() if s == scenario for v in vals]
        ops["all"] = stats(everything)
        ops["all"]["errors"] = sum(e[0] for (s, _), e in errors_by_op.items() if s == scenario)
        seconds_of = sorted({s for s, sc in durations if sc == scenario})
        # Whole seconds only: the first and last are partial.
        full = seconds_of[1:-1] or seconds_of
        ops["all"]["rate"] = round(
            sum(len(durations[(s, scenario)]) for s in full) / max(1, len(full)), 1
        )
        ops["all"]["dropped"] = sum(n for (_, sc), n in dropped.items() if sc == scenario)
    clean = None
    if steal:
        is_clean = lambda s: steal.get(s, (None, False))[1]
        clean = {
            "limit": STEAL_LIMIT,
            "steal": steal_total(samples),
            "scenarios": {},
            "delivery": stats([x for s, v in delivery.items() if is_clean(s) for x in v]),
        }
        for scenario in scenarios:
            seconds_of = sorted({s for s, sc in durations if sc == scenario})
            row = stats([x for s in seconds_of if is_clean(s) for x in durations[(s, scenario)]])
            row["seconds"], row["clean_seconds"] = len(seconds_of), sum(map(is_clean, seconds_of))
            row["dropped"] = sum(n for (s, sc), n in dropped.items() if sc == scenario and is_clean(s))
            clean["scenarios"][scenario] = row
    with open(out_path, "w") as out:
        json.dump(
            {
                "series": series,
                "scenarios": scenarios,
                "delivery": [dict(stats(v), t=s - start) for s, v in sorted(delivery.items())],
                "delivery_all": stats([x for v in delivery.values() for x in v]),
                "ws_errors": ws["ws_errors"],
                "ws_events": ws["ws_events"],
                "clean": clean,
            },
            out,
            indent=1,
        )


def load(path):
    with open(path) as f:
        return json.load(f)


def minute_p95(series, scenario, first):
    """The first or last minute's latency: the median of its per-second p95s, over its clean
    seconds when the run recorded steal; returns (ms or None, seconds used). A median, so
    that drift means a sustained rise: one stall of a few seconds (a search-index merge, a
    WAL checkpoint on a debug build with 2 cores) moved the count-weighted mean used before
    by a factor of two in CI's 2-minute soak while the other 50 seconds were flat."""
    rows = [r for r in series if r["scenario"] == scenario]
    if not rows:
        return None, 0
    end = max(r["t"] for r in rows)
    lo, hi = (0, 60) if first else (end - 60, end + 1)
    p95s = [r["p95"] for r in rows if lo <= r["t"] < hi and r["p95"] is not None and r.get("clean", True)]
    return median(p95s), len(p95s)


def median(values):
    """The middle value (the upper one of an even count), or None for no values."""
    values = sorted(values)
    return values[len(values) // 2] if values else None


def rss_rows(path):
    """(t, rss KiB, anonymous KiB, connections, unix seconds, the search index's mapped KiB,
    the search index's KiB on disk) per sample, by the file's header: runs recorded before a
    column existed give None for it (and older runs' steal column, now in soak.steal.csv, is
    skipped)."""
    rows = []
    with open(path) as f:
        header = f.readline().strip().split(",")
        for line in f:
            row = dict(zip(header, line.strip().split(",")))
            if "rss_kib" not in row or "anon_kib" not in row:
                continue  # the line being written when the file was read
            conns, unix, index = row.get("connections"), row.get("unix"), row.get("index_kib")
            disk = row.get("index_disk_kib")
            rows.append((float(row["t"]), int(row["rss_kib"]), int(row["anon_kib"]), int(conns) if conns else None,
                         float(unix) if unix else None, int(index) if index else None, int(disk) if disk else None))
    return rows


def cores():
    return os.cpu_count() or 1


def steal_share(seconds, ticks):
    """The share of all cores' time that `ticks` of steal took over `seconds` (at least 1)."""
    return ticks / (os.sysconf("SC_CLK_TCK") * cores() * max(1.0, seconds))


def warmup_growth(warmup, end):
    """The growth from the cold start's reference window (its lowest sample) to the soak's
    end (`end`, KiB), or None without warm-up samples."""
    if not warmup:
        return None
    _, window = reference_window(warmup[-1][0])
    cold = lowest_kib(warmup, window, 1)
    return (end - cold) / cold


def warmup_line(warmup, end):
    """What the unjudged warm-up before the soak saw (scripts/loadtest SOAK_WARMUP): the cold
    start's reference window (`reference_window`) and its last minute (or second half), each
    its lowest sample as the soak's check takes them, and the growth from that cold
    reference to the soak's end (`end`, KiB). `warmup` is in the judged measure (`own_rows`),
    and the line says so when the run recorded the search index's pages."""
    if not warmup:
        return "warm-up before the soak: no RSS samples"
    duration = warmup[-1][0]
    measure = "; RSS without the search index" if any(r[5] is not None for r in warmup) else ""
    at, window = reference_window(duration)
    cold = lowest_kib(warmup, window, 1)
    last = lowest_kib(warmup, (max(duration - 60, duration / 2), duration), 1)
    return (
        f"warm-up before the soak (not judged, {duration:.0f} s{measure}): {cold / 1024:.1f} MiB around {at:.0f} s of the cold start, "
        f"{last / 1024:.1f} MiB in its last minute; from that cold start's {at:.0f} s to the soak's end {(end - cold) / cold:+.1%}"
    )


def reference_window(duration):
    """The soak's reference for RSS: (second, window of seconds) around minute 2, or around
    half the run for a run under 4 minutes."""
    at = 120 if duration >= 240 else duration / 2
    half = min(30, at / 2)
    return at, (at - half, at + half)


def lowest_kib(rows, window, column):
    """The lowest value of one column of the RSS samples taken in a (start, end) window."""
    return min(r[column] for r in rows if window[0] <= r[0] <= window[1])


def own_rows(rows):
    """The samples with RSS less the search index's mapped pages (column 1): the memory the
    server holds for itself. A run recorded without the index column keeps all of RSS."""
    return [(r[0], r[1] - (r[5] or 0)) + r[2:] for r in rows]


@dataclass
class SoakVerdict:
    """The soak's verdict: `status` per check ("errors", "rss", "drift": "ok", "FAIL" or
    "SKIP"), the judged growth and the figures printed beside it, and the lines to print."""
    ok: bool
    status: dict
    rss_growth: float
    all_rss_growth: float | None
    warmup_growth: float | None
    lines: list = field(default_factory=list)


def soak_verdict(results, slack_mib=0):
    """The soak's verdict from soak.json and rss.csv.

    Memory: RSS without the search index's mapped files, the lowest sample in the minute
    around minute 2 (or around half the run, for a run under 4 minutes) against the lowest
    in the last minute, at most +10%. The index's pages are the kernel's page cache, which
    searches read and which grows with the data indexed (docs/loadtest.md, "What the soak
    judges"): all of RSS is printed beside the verdict, not judged. The lowest sample,
    because the index's commits allocate some 6 MiB of tables that live for part of a
    second and a sample catches one now and then; a leak raises the floor. The bound is on
    growth: memory handed back is not a leak. `slack_mib` (CI's short soak on a debug build)
    also passes growth up to that many MiB whatever the ratio.
    Latency drift: the median per-second p95 of the last minute against the first's.
    Errors: none, GraphQL/HTTP or WebSocket.
    """
    data = load(os.path.join(results, "soak.json"))
    rss = rss_rows(os.path.join(results, "rss.csv"))
    allops = data["scenarios"]["mix"]["all"]
    duration = rss[-1][0] if rss else 0
    reference_at, first_window = reference_window(duration)
    last_window = (duration - 60, duration)
    own = own_rows(rss)
    reference = lowest_kib(own, first_window, 1)
    end = lowest_kib(own, last_window, 1)
    growth = (end - reference) / reference
    peak = max(r[1] for r in own)
    indexed = any(r[5] is not None for r in rss)
    all_growth = None
    if indexed:
        all_reference, all_end = lowest_kib(rss, first_window, 1), lowest_kib(rss, last_window, 1)
        all_growth = (all_end - all_reference) / all_reference
    slack = f" or +{slack_mib} MiB" if slack_mib else ""
    rss_ok = growth <= 0.10 or end - reference <= slack_mib * 1024
    (first, n_first), (last, n_last) = minute_p95(data["series"], "mix", True), minute_p95(data["series"], "mix", False)
    errors = allops["errors"] + data.get("ws_errors", 0)
    status, lines = {}, []

    def judge(name, ok, line):
        status[name] = "ok" if ok else "FAIL"
        lines.append(("ok  " if ok else "FAIL") + " " + line)

    judge("errors", errors == 0, f"errors: {allops['errors']} GraphQL/HTTP, {data.get('ws_errors', 0)} WebSocket, of {allops['count']} requests")
    judge("rss", rss_ok, f"RSS{' without the search index' if indexed else ''} (lowest sample of a minute): {reference / 1024:.1f} MiB around {reference_at:.0f} s, {end / 1024:.1f} MiB in the last minute (to {duration:.0f} s): {growth:+.1%} (bound: at most +10%{slack}); highest sample {peak / 1024:.1f} MiB")
    clean = " clean" if data.get("clean") else ""  # whether minute_p95 took clean seconds only
    if min(n_first, n_last) >= MINUTE_QUORUM:
        judge("drift", last <= 1.5 * first + 2.0, f"p95 (median of the per-second p95s{' over the clean seconds' if clean else ''}) first minute {first:.2f} ms ({n_first} s), last minute {last:.2f} ms ({n_last} s) (bound: last <= 1.5 x first + 2 ms)")
    else:
        status["drift"] = "SKIP"
        lines.append(f"SKIP p95 drift not judged: {n_first} and {n_last}{clean} seconds in the first and last minute (at least {MINUTE_QUORUM} each)")
    if all_growth is not None:
        lines.append(f"info RSS with the search index's mapped files (not judged: they grow with the data): {all_growth:+.1%}")
    warmup_path = os.path.join(results, "rss-warmup.csv")
    warmed = None
    if os.path.exists(warmup_path):
        warmup = own_rows(rss_rows(warmup_path))
        warmed = warmup_growth(warmup, end)
        lines.append("info " + warmup_line(warmup, end))
    return SoakVerdict(
        ok=all(v != "FAIL" for v in status.values()), status=status, rss_growth=growth,
        all_rss_growth=all_growth, warmup_growth=warmed, lines=lines,
    )


# Thresholds on these metrics measure latency (dropped iterations: k6 could not start them
# on time); the rest (errors) hold on every second, whatever the host did.
LATENCY_METRICS = {"http_req_duration", "ws_delivery", "dropped_iterations"}


def clean_line(clean, scenario):
    c = clean["scenarios"].get(scenario, {})
    return (
        f"{c.get('clean_seconds', 0)} of {c.get('seconds', 0)} seconds ({c.get('count', 0)} requests) had the host's "
        f"steal at most {clean['limit']:.0%} around them (steal over the run: {clean['steal']:.1%} of {cores()} cores)"
    )


def judged(clean, scenario):
    """Whether the clean seconds hold enough requests to judge latency on them."""
    return clean["scenarios"].get(scenario, {}).get("count", 0) >= CLEAN_QUORUM


def rejudge(metric, expression, clean, scenario):
    """A latency threshold k6 saw crossed, on the clean seconds: (holds?, figure) or None
    when the expression is not one this can recompute."""
    if metric == "dropped_iterations":
        m = re.fullmatch(r"count<(\d+)", expression)
        value = clean["scenarios"][scenario]["dropped"]
    else:
        m = re.fullmatch(r"p\((95|99)\)<(\d+(?:\.\d+)?)", expression)
        source = clean["delivery"] if metric == "ws_delivery" else clean["scenarios"][scenario]
        value = source[f"p{m.group(1)}"] if m else None
    if not m or value is None:
        return None
    bound = float(m.group(m.lastindex))
    return value < bound, value


@dataclass
class GateVerdict:
    """One k6 run's verdict: `status` per threshold k6 saw crossed ("<metric> <expression>":
    "ok" when the clean seconds hold it, "FAIL" or "SKIP"), or per whole run ("k6": "ok" or
    "FAIL" when k6 failed for a reason other than a threshold); and the lines to print."""
    ok: bool
    status: dict
    lines: list = field(default_factory=list)


def gate(results, name, k6_status):
    """The verdict of one k6 run (NAME.json, NAME-summary.json).

    k6 exits 0 when every threshold held and 99 when some did not (anything else: the run
    itself failed). A crossed error threshold fails. A crossed latency threshold is judged
    again on the clean seconds: it fails when they break the same bound, and is not judged
    ("SKIP") when too few seconds were clean (CLEAN_QUORUM)."""
    data = load(os.path.join(results, f"{name}.json"))
    clean = data.get("clean")
    scenario = "mix"  # the scenario whose requests the thresholds are on (loadtest/mix.js)
    status, lines = {}, []
    if clean:
        lines.append("info " + clean_line(clean, scenario))
    if k6_status == 0:
        return GateVerdict(True, {"k6": "ok"}, ["ok   k6 thresholds held over the whole run"] + lines)
    if k6_status != 99:
        line = f"FAIL k6 exited {k6_status} (not a threshold: see {name}.k6.txt)"
        return GateVerdict(False, {"k6": "FAIL"}, [line] + lines)
    summary = load(os.path.join(results, f"{name}-summary.json"))["metrics"]

    def judge(threshold, outcome, line):
        status[threshold] = outcome
        lines.append(f"{outcome:<4} {line}")

    for key, metric in sorted(summary.items()):
        base = key.split("{")[0]
        for expression, crossed in metric.get("thresholds", {}).items():
            if not crossed:
                continue
            threshold = f"{key} {expression}"
            whole = f"{threshold} crossed over the whole run"
            if base not in LATENCY_METRICS or not clean:
                judge(threshold, "FAIL", whole)
            elif not judged(clean, scenario):
                judge(threshold, "SKIP", f"{whole}; not judged: the clean seconds hold fewer than {CLEAN_QUORUM} requests")
            elif (verdict := rejudge(base, expression, clean, scenario)) is None:
                judge(threshold, "FAIL", f"{whole} (not recomputable on the clean seconds)")
            else:
                holds, value = verdict
                judge(threshold, "ok" if holds else "FAIL", f"{whole}; on the clean seconds: {value:g} ({expression})")
    return GateVerdict(all(v != "FAIL" for v in status.values()), status, lines)


def ms(value):
    return "—" if value is None else f"{value:.2f}"


def single_rows(results, levels, step):
    """Per operation and concurrency: (rate, p50, p95, p99) from the k6 summary exports."""
    rows = {}
    for name in sorted(os.listdir(results)):
        if not (name.startswith("single-") and name.endswith(".json")):
            continue
        op = name[len("single-") : -len(".json")]
        summary = load(os.path.join(results, name))["metrics"]
        for level in levels:
            d = summary.get(f"http_req_duration{{scenario:c{level}}}")
            n = summary.get(f"http_reqs{{scenario:c{level}}}")
            if not d or not n:
                continue
            rows[(op, level)] = (n["count"] / step, d["med"], d["p(95)"], d["p(99)"])
    return rows


def soak_clients(meta):
    """The soak's fixed set of k6 clients, warm-up and stalls, for its heading (results from
    before the clients were fixed have none)."""
    vus, warmup, stalls = meta.get("soak_vus"), meta.get("soak_warmup"), meta.get("soak_stalls")
    if not vus:
        return ""
    after = f", after a {warmup} warm-up" if warmup and warmup != "0" else ""
    stalled = f", the server stopped {stalls.split(':')[-1]} s every {stalls.split(':')[0]} s" if stalls else ""
    return f", {vus} clients and {meta.get('subscribers')} subscribers{after}{stalled}"


def gate_lines(results, name):
    """The run's verdict as scripts/loadtest printed it (NAME.gate.txt), as list items."""
    path = os.path.join(results, f"{name}.gate.txt")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [f"- {line}" for line in f.read().splitlines() if line]


def report(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    meta = load(os.path.join(results, "meta.json"))
    levels = meta["levels"]
    lines = [
        "# Load test report",
        "",
        f"{meta['date']} · {meta['machine']} · `{meta['command']}` · server build: {meta['build']}.",
        "k6 runs on the same cores as the server, so every figure is also a ratio of the bare",
        "axum endpoint (`chat-bench-bare`) measured in the same run with the same client: that",
        "ratio is what the server costs beyond HTTP on this machine.",
        "",
    ]
    singles = single_rows(results, levels, meta["step_seconds"])
    if singles:
        top = max(levels)
        bare = singles.get(("bare", top))
        lines += [
            f"## Single operations ({meta['step_seconds']} s per concurrency)",
            "",
            f"| operation | clients | throughput/s | ÷ bare | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for op in ["bare", "noop"] + OPS:
            for level in levels:
                row = singles.get((op, level))
                if not row:
                    continue
                ceiling = singles.get(("bare", level))
                ratio = f"{row[0] / ceiling[0]:.3f}" if ceiling else "—"
                label = {"bare": "bare axum endpoint", "noop": "`{ __typename }` (auth + GraphQL, no store)"}.get(op, f"`{op}`")
                lines.append(f"| {label} | {level} | {row[0]:,.0f} | {ratio} | {ms(row[1])} | {ms(row[2])} | {ms(row[3])} |")
        lines.append("")
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for op in ["bare"] + OPS:
            xs = [lv for lv in levels if (op, lv) in singles]
            if not xs:
                continue
            ax1.plot(xs, [singles[(op, lv)][0] for lv in xs], marker="o", label=op)
            ax2.plot(xs, [singles[(op, lv)][3] for lv in xs], marker="o", label=op)
        ax1.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="requests/s", title="throughput vs concurrency")
        ax2.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="p99 ms", title="p99 latency vs concurrency")
        for ax in (ax1, ax2):
            ax.set_xticks(levels, [str(lv) for lv in levels])
            ax.grid(True, which="both", alpha=0.3)
        ax1.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "concurrency.png"), dpi=90)
        plt.close(fig)
        lines += ["![throughput and p99 vs concurrency](concurrency.png)", ""]
        if bare:
            lines.append(f"Bare ceiling at {top} clients: {bare[0]:,.0f} requests/s, p99 {bare[3]:.2f} ms.")
            lines.append("")

    steps_path = os.path.join(results, "steps.json")
    if os.path.exists(steps_path):
        steps = load(steps_path)
        p99_bound = meta["p99_ms"]
        lines += [
            f"## The mix at increasing rates ({meta['step_seconds_mix']} s per rate, {meta['subscribers']} subscribers)",
            "",
            "| offered/s | achieved/s | p50 ms | p95 ms | p99 ms | errors | dropped |",
            "|---|---|---|---|---|---|---|",
        ]
        sustained = None
        held = True  # every step so far held the bound: the sustained rate is below the first miss
        rates = sorted(
            (int(name.split("_")[1]), name) for name in steps["scenarios"] if name.startswith("rate_")
        )
        for rate, name in rates:
            a = steps["scenarios"][name]["all"]
            ok = a["p99"] is not None and a["p99"] <= p99_bound and a["errors"] == 0 and a["dropped"] == 0
            held = held and ok
            if held:
                sustained = (rate, a)
            lines.append(
                f"| {rate} | {a['rate']:,.0f} | {ms(a['p50'])} | {ms(a['p95'])} | {ms(a['p99'])} | {a['errors']} | {a['dropped']} |"
            )
        lines.append("")
        if sustained:
            bare = singles.get(("bare", max(levels))) if singles else None
            ratio = f" ({sustained[1]['rate'] / bare[0]:.3f} of the bare ceiling)" if bare else ""
            lines.append(f"**Sustained mix rate with p99 ≤ {p99_bound} ms: {sustained[0]}/s**{ratio} (p99 {sustained[1]['p99']:.2f} ms).")
        else:
            lines.append(f"No step held p99 ≤ {p99_bound} ms without errors.")
        lines.append("")
        plot_series(plt, steps, os.path.join(out, "mix-steps.png"), "the mix, rate by rate")
        lines += ["![the mix over time](mix-steps.png)", ""]

    steady_path = os.path.join(results, "steady.json")
    if os.path.exists(steady_path):
        steady = load(steady_path)
        a = steady["scenarios"]["mix"]["all"]
        d = steady["delivery_all"]
        lines += [
            f"## The mix, steady ({meta['steady_rate']}/s for {meta['steady_duration']}, {meta['subscribers']} subscribers): {'passed' if meta.get('steady_passed') else 'FAILED'}",
            "",
        ]
        lines += gate_lines(results, "steady") + [
            "",
            "| operation | requests | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
        ]
        for op in OPS + ["chats", "all"]:
            r = steady["scenarios"]["mix"].get(op)
            if r:
                lines.append(f"| {op} | {r['count']} | {ms(r['p50'])} | {ms(r['p95'])} | {ms(r['p99'])} | {r['errors']} |")
        lines += ["", f"Subscription delivery (send → event, {d['count']} events, {steady['ws_errors']} WebSocket errors): p50 {ms(d['p50'])} ms, p99 {ms(d['p99'])} ms.", ""]
        plot_series(plt, steady, os.path.join(out, "mix-steady.png"), "the mix, steady rate")
        lines += ["![the steady mix over time](mix-steady.png)", ""]

    soak_path = os.path.join(results, "soak.json")
    if os.path.exists(soak_path):
        verdict = soak_verdict(results, meta.get("rss_slack_mib", 0))
        judged_lines = gate_lines(results, "soak")
        ok = verdict.ok and not any(line.startswith("- FAIL") for line in judged_lines)
        soak = load(soak_path)
        lines += [f"## Soak ({meta.get('soak')} at {meta.get('soak_rate')}/s{soak_clients(meta)}): {'passed' if ok else 'FAILED'}", ""]
        lines += judged_lines + [f"- {line}" for line in verdict.lines] + [""]
        plot_series(plt, soak, os.path.join(out, "soak.png"), "soak", rss=rss_rows(os.path.join(results, "rss.csv")))
        lines += ["![soak: throughput, latency and RSS over time](soak.png)", ""]

    faults_path = os.path.join(results, "faults.txt")
    if os.path.exists(faults_path):
        text = open(faults_path).read()
        # Parallel tests interleave their output: take each round's line from where it starts.
        summary = [
            m.group(0)
            for m in re.finditer(r"(kill -9 rounds|round \d+:|test result)[^\n]*", text)
        ]
        lines += ["## Faults (`cargo test -p chat-server --test server -- faults:: shutdown::`)", "", "```"] + summary + ["```", ""]

    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def plot_series(plt, data, path, title, rss=None):
    rows = [r for r in data["series"] if r["scenario"] not in ("subscribers", "setup")]
    panels = 3 if rss else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.6 * panels), sharex=True)
    ts = [r["t"] for r in rows]
    axes[0].plot(ts, [r["count"] for r in rows], lw=1)
    axes[0].set(ylabel="requests/s", title=title)
    for key in ("p50", "p95", "p99"):
        axes[1].plot(ts, [r[key] for r in rows], lw=1, label=key)
    if data.get("delivery"):
        axes[1].plot([r["t"] for r in data["delivery"]], [r["p99"] for r in data["delivery"]], lw=1, ls=":", label="delivery p99")
    axes[1].set(ylabel="ms", yscale="log")
    # Shaded: the seconds the host's steal was over the limit (not judged for latency).
    stolen = sorted({r["t"] for r in rows if r.get("clean") is False})
    for i, t in enumerate(stolen):
        axes[1].axvspan(t - 0.5, t + 0.5, color="grey", alpha=0.15, lw=0, label=f"steal > {STEAL_LIMIT:.0%}" if i == 0 else None)
    axes[1].legend(fontsize=8, loc="upper left")
    if rss:
        start = rss[0][0]
        axes[2].plot([r[0] - start for r in rss], [r[1] / 1024 for r in rss], label="RSS")
        axes[2].plot([r[0] - start for r in rss], [r[2] / 1024 for r in rss], label="anonymous")
        indexed = [r for r in rss if r[5] is not None]
        if indexed:
            axes[2].plot([r[0] - start for r in indexed], [r[1] / 1024 for r in own_rows(indexed)], label="RSS without the search index (judged)")
            axes[2].plot([r[0] - start for r in indexed], [r[5] / 1024 for r in indexed], label="search index's mapped pages")
        axes[2].set(ylabel="MiB")
        axes[2].legend(fontsize=8, loc="upper left")
        for t in stolen:
            axes[2].axvspan(t - 0.5, t + 0.5, color="grey", alpha=0.15, lw=0)
    axes[-1].set(xlabel="seconds")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "aggregate":
        aggregate(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif command == "gate":
        verdict = gate(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        print("\n".join(verdict.lines))
        sys.exit(0 if verdict.ok else 1)
    elif command == "soak-check":
        verdict = soak_verdict(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
        print("\n".join(verdict.lines))
        sys.exit(0 if verdict.ok else 1)
    elif command == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {command}")
