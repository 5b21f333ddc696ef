"""The gateway benchmark's report as Markdown tables, and its comparison with a saved baseline."""

from __future__ import annotations

from typing import Any

from figures import change_cell, fmt
from gateway_goals import difference
from gateway_targets import DIALECTS, target_name

PHASES = ("single_plain", "single_stream", "concurrent_plain", "concurrent_stream")
SERVERS = ("generator", "upstream", "proxy", "promptdeck")


def measured_targets(results: dict[str, dict[str, Any]]) -> list[str]:
    """The targets of the run in their order: direct, proxy, then promptdeck's dialects."""
    names = ["direct", "proxy", *(target_name(d) for d in DIALECTS)]
    return [name for name in names if any(name in targets for targets in results.values())]


def label(target: str) -> str:
    if target == "promptdeck":
        return "fetchhive"
    return target.removeprefix("promptdeck_")


def figures_table(report: dict[str, Any]) -> list[str]:
    results = report["results"]
    callers = report["meta"]["plan"]["callers"]
    deltas = report["meta"]["upstream_deltas"]
    rows = [
        ("1 caller, non-streaming", "latency p50 (ms)", "single_plain", "p50_ms"),
        ("", "latency p99 (ms)", "single_plain", "p99_ms"),
        (f"1 caller, streaming ({deltas} deltas)", "first event p50 (ms)", "single_stream", "ttfb_p50_ms"),
        ("", "first event p99 (ms)", "single_stream", "ttfb_p99_ms"),
        ("", "whole stream p50 (ms)", "single_stream", "p50_ms"),
        (f"{callers} callers, non-streaming", "throughput (req/s)", "concurrent_plain", "rps"),
        ("", "sustained, runs written (req/s)", "concurrent_plain", "rps_sustained"),
        ("", "latency p50 (ms)", "concurrent_plain", "p50_ms"),
        ("", "latency p99 (ms)", "concurrent_plain", "p99_ms"),
        ("", "server CPU per request (µs)", "concurrent_plain", "server_cpu_us_per_request"),
        ("", "one core's capacity from CPU/request (req/s)", "concurrent_plain", "cpu_capacity_rps"),
        (f"{callers} callers, streaming", "throughput (streams/s)", "concurrent_stream", "rps"),
        ("", "sustained, runs written (streams/s)", "concurrent_stream", "rps_sustained"),
        ("", "whole stream p50 (ms)", "concurrent_stream", "p50_ms"),
        ("", "first event p50 (ms)", "concurrent_stream", "ttfb_p50_ms"),
        ("", "server CPU per stream (µs)", "concurrent_stream", "server_cpu_us_per_request"),
        ("", "server CPU per streamed event (µs)", "concurrent_stream", "cpu_us_per_event"),
        ("", "one core's capacity from CPU/stream (streams/s)", "concurrent_stream", "cpu_capacity_rps"),
    ]
    targets = measured_targets(results)
    lines = [
        "| load | figure | " + " | ".join(label(t) for t in targets) + " |",
        "|---|---|" + "---:|" * len(targets),
    ]
    for load, figure, phase, key in rows:
        if not results.get(phase):
            continue
        cells = [fmt(results[phase].get(t, {}).get(key)) for t in targets]
        lines.append(f"| {load} | {figure} | " + " | ".join(cells) + " |")
    memory = report.get("memory", {})
    if memory:
        cells = [
            fmt(memory.get("promptdeck" if t.startswith("promptdeck") else t, {}).get("hwm_mb"))
            for t in targets
        ]
        lines.append("| whole run | peak RSS, VmHWM (MB) | " + " | ".join(cells) + " |")
    return lines


VERSUS = (
    ("added_p50_ms_1_caller", "1 caller, non-streaming: p50 added (ms)"),
    ("added_ttfb_p50_ms_1_caller", "1 caller, streaming: first event p50 added (ms)"),
    ("added_stream_p50_ms_1_caller", "1 caller, streaming: whole stream p50 added (ms)"),
    ("rps_ratio", "N callers, non-streaming: req/s ÷ the proxy's"),
    ("sustained_rps_ratio", "N callers, non-streaming: sustained req/s ÷ the proxy's"),
    ("cpu_capacity_ratio", "N callers, non-streaming: CPU capacity ÷ the proxy's"),
    ("streams_ratio", "N callers, streaming: streams/s ÷ the proxy's"),
    ("sustained_streams_ratio", "N callers, streaming: sustained streams/s ÷ the proxy's"),
    ("stream_cpu_capacity_ratio", "N callers, streaming: CPU capacity ÷ the proxy's"),
    ("added_cpu_us_per_event", "CPU per streamed event added (µs)"),
)


def versus_table(report: dict[str, Any]) -> list[str]:
    """promptdeck per dialect against the proxy, and (p50, first event) against the upstream."""
    versus: dict[str, dict[str, Any]] = report.get("versus_proxy", {})
    if not versus:
        return []
    callers = str(report["meta"]["plan"]["callers"])
    dialects = list(versus)
    lines = [
        "promptdeck against the reference proxy, measured in this run (and, below, against the upstream):",
        "",
        "| figure | " + " | ".join(dialects) + " |",
        "|---|" + "---:|" * len(dialects),
    ]
    for key, text in VERSUS:
        cells = [fmt(versus[d].get(key), sign=key.startswith("added")) for d in dialects]
        lines.append(f"| {text.replace('N callers', callers + ' callers')} | " + " | ".join(cells) + " |")
    results = report["results"]
    for phase, key, text in (
        ("single_plain", "p50_ms", "1 caller, non-streaming: p50 added over direct (ms)"),
        ("single_stream", "ttfb_p50_ms", "1 caller, streaming: first event p50 added over direct (ms)"),
    ):
        cells = [fmt(difference(results, phase, key, target_name(d), "direct"), sign=True) for d in dialects]
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    return lines


GOAL_NAMES = {
    "added_cpu_us_per_streamed_event_over_proxy": "CPU per streamed event, added over the proxy's",
    "streams_per_s_ratio_to_proxy": "sustained streams/s, N callers, share of the proxy's",
    "added_ttfb_p50_ms_1_caller_over_proxy": "first streamed event p50, 1 caller, added over the proxy",
    "rps_ratio_to_proxy": "sustained req/s, N callers, non-streaming, share of the proxy's (every dialect)",
    "added_p50_ms_1_caller_over_proxy": "latency p50, 1 caller, non-streaming, added over the proxy",
    "peak_rss_mb": "promptdeck's peak RSS (VmHWM) over the run",
    "added_p50_ms_1_caller": "earlier: added latency p50 over direct, 1 caller, Fetch Hive",
    "added_ttfb_p50_ms_1_caller": "earlier: added first streamed event p50 over direct, 1 caller, Fetch Hive",
    "rps_32_callers_one_core": "earlier: throughput, N callers, Fetch Hive, promptdeck on one core",
}


def goals_table(report: dict[str, Any]) -> list[str]:
    callers = str(report["meta"]["plan"]["callers"])
    lines = ["| goal | target | measured (the worst dialect's) | met |", "|---|---|---|---|"]
    for key, goal in report["goals"].items():
        measured = fmt(goal["measured"])
        by_dialect = goal.get("by_dialect") or {}
        if len(by_dialect) > 1:
            measured += " (" + ", ".join(f"{d} {fmt(v)}" for d, v in by_dialect.items()) + ")"
        name = GOAL_NAMES.get(key, key).replace("N callers", f"{callers} callers")
        met = "—" if goal["measured"] is None else ("yes" if goal["met"] else "NO")
        lines.append(f"| {name} | {goal['goal']} | {measured} | {met} |")
    return lines


def cpu_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "CPU during each measured phase (core 0: generator + upstream; core 1: the proxy or promptdeck):",
        "",
        "| phase | target | core 0 busy | core 1 busy | other load (cores) | "
        + " | ".join(f"{server} µs/req" for server in SERVERS)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(SERVERS),
    ]
    for phase in PHASES:
        for target in measured_targets(results):
            cpu = results.get(phase, {}).get(target, {}).get("cpu")
            if not cpu:
                continue
            cells = [cpu.get("core0_busy"), cpu.get("core1_busy"), cpu.get("other_load_cores")]
            cells += [cpu.get(f"{server}_cpu_us_per_request") for server in SERVERS]
            lines.append(f"| {phase} | {label(target)} | " + " | ".join(fmt(c) for c in cells) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    lines = figures_table(report)
    if versus := versus_table(report):
        lines += ["", *versus]
    lines += ["", *goals_table(report), "", *cpu_table(results)]
    writer = [
        f"{phase}: {w.get('batches')} batches, last {fmt(w.get('last_batch_ms'))} ms"
        for phase in PHASES
        if (w := results.get(phase, {}).get("promptdeck", {}).get("writer"))
    ]
    if writer:
        lines += ["", "promptdeck's run writer (totals so far, from /api/health): " + "; ".join(writer)]
    targets = measured_targets(results)
    errors = sum(results.get(p, {}).get(t, {}).get("errors", 0) for p in PHASES for t in targets)
    capped = [f"{p}/{t}" for p in PHASES for t in targets if results.get(p, {}).get(t, {}).get("capped")]
    if errors or capped:
        lines += ["", f"**{errors} errors; phases stopped by the time cap: {', '.join(capped) or 'none'}**"]
    return "\n".join(lines)


COMPARED = (
    ("single_plain", "p50_ms", "lower"),
    ("single_plain", "p99_ms", "lower"),
    ("single_stream", "ttfb_p50_ms", "lower"),
    ("single_stream", "ttfb_p99_ms", "lower"),
    ("concurrent_plain", "rps", "higher"),
    ("concurrent_plain", "rps_sustained", "higher"),
    ("concurrent_plain", "cpu_capacity_rps", "higher"),
    ("concurrent_plain", "p50_ms", "lower"),
    ("concurrent_plain", "p99_ms", "lower"),
    ("concurrent_stream", "rps", "higher"),
    ("concurrent_stream", "rps_sustained", "higher"),
    ("concurrent_stream", "cpu_capacity_rps", "higher"),
    ("concurrent_stream", "cpu_us_per_event", "lower"),
)


def compare(latest: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Each figure of every target both runs measured, against the baseline's."""
    lines = [f"Compared with the baseline of {baseline.get('meta', {}).get('date', '?')}:"]
    old_deltas = baseline.get("meta", {}).get("upstream_deltas")
    if old_deltas != latest["meta"].get("upstream_deltas"):
        lines.append(
            f"(the baseline's streams had {old_deltas} deltas, this run's "
            f"{latest['meta'].get('upstream_deltas')}: streaming figures differ for that alone)"
        )
    lines += ["", "| phase | figure | target | baseline | latest | change |", "|---|---|---|---:|---:|---:|"]
    for phase, key, better in COMPARED:
        for target in measured_targets(latest["results"]):
            old = baseline.get("results", {}).get(phase, {}).get(target, {}).get(key)
            new = latest["results"].get(phase, {}).get(target, {}).get(key)
            if old is None or new is None:
                continue
            change = change_cell(old, new, better)
            lines.append(f"| {phase} | {key} | {label(target)} | {fmt(old)} | {fmt(new)} | {change} |")
    return "\n".join(lines)
