"""The gateway benchmark's derived figures and its goals.

Issue 20 ("wire speed") states promptdeck's goals against the reference proxy
(reference_proxy.py) measured in the same run, on the same core: ratios and differences, so
that a busy machine moves both sides alike. The earlier goals, against the upstream alone and
in absolute requests per second, are kept (their keys in the JSON too).
"""

from __future__ import annotations

from typing import Any

from gateway_targets import DIALECTS, target_name

# Issue 20: promptdeck against the reference proxy.
GOAL_EVENT_CPU_US = 10.0  # added CPU per streamed event, over the proxy's: at most
GOAL_STREAMS_RATIO = 0.60  # streams/s with 32 callers, share of the proxy's: at least
GOAL_TTFB_OVER_PROXY_MS = 0.2  # first streamed byte with 1 caller, added over the proxy: at most
GOAL_RPS_RATIO = 0.70  # non-streaming req/s with 32 callers, share of the proxy's, every dialect
GOAL_P50_OVER_PROXY_MS = 0.1  # non-streaming p50 with 1 caller, added over the proxy: at most
GOAL_PEAK_RSS_MB = 100.0  # promptdeck's peak resident memory (VmHWM) under the load: at most

# The earlier goals, against the upstream alone, and the figures that issue gave for other
# gateways measured the same way.
GOAL_ADDED_P50_MS = 1.0
GOAL_ADDED_TTFB_MS = 1.0
GOAL_RPS = 2000.0
REFERENCES = {
    "Portkey gateway (Node)": {"rps": 970, "p50_ms_1_caller": 1.1, "first_streamed_byte_ms": 28},
    "LiteLLM proxy": {"rps": 85, "p50_ms_1_caller": 17},
}


def figure(results: dict[str, dict[str, Any]], phase: str, target: str, key: str) -> Any:
    return results.get(phase, {}).get(target, {}).get(key)


def difference(
    results: dict[str, dict[str, Any]], phase: str, key: str, target: str, base: str
) -> float | None:
    """`target`'s figure minus `base`'s (both measured in this run), or None."""
    new, old = figure(results, phase, target, key), figure(results, phase, base, key)
    return round(new - old, 3) if new is not None and old is not None else None


def ratio(results: dict[str, dict[str, Any]], phase: str, key: str, target: str, base: str) -> float | None:
    new, old = figure(results, phase, target, key), figure(results, phase, base, key)
    return round(new / old, 3) if new is not None and old else None


def add_event_cpu(results: dict[str, dict[str, Any]], deltas: int) -> None:
    """Each server's CPU per streamed event, into its `concurrent_stream` figures: what a stream
    costs beyond a non-streamed request of the same callers, over the stream's `deltas` events."""
    streams = results.get("concurrent_stream", {})
    for target, figures in streams.items():
        per_stream = figures.get("server_cpu_us_per_request")
        per_request = figure(results, "concurrent_plain", target, "server_cpu_us_per_request")
        if per_stream is not None and per_request is not None and deltas:
            figures["cpu_us_per_event"] = round((per_stream - per_request) / deltas, 2)


def versus_proxy(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """promptdeck's figures per dialect as differences from, and ratios to, the proxy's."""
    found: dict[str, dict[str, float | None]] = {}
    for dialect in DIALECTS:
        name = target_name(dialect)
        if not any(name in targets for targets in results.values()):
            continue
        found[dialect] = {
            "added_p50_ms_1_caller": difference(results, "single_plain", "p50_ms", name, "proxy"),
            "added_ttfb_p50_ms_1_caller": difference(results, "single_stream", "ttfb_p50_ms", name, "proxy"),
            "added_stream_p50_ms_1_caller": difference(results, "single_stream", "p50_ms", name, "proxy"),
            "rps_ratio": ratio(results, "concurrent_plain", "rps", name, "proxy"),
            "sustained_rps_ratio": ratio(results, "concurrent_plain", "rps_sustained", name, "proxy"),
            "cpu_capacity_ratio": ratio(results, "concurrent_plain", "cpu_capacity_rps", name, "proxy"),
            "streams_ratio": ratio(results, "concurrent_stream", "rps", name, "proxy"),
            "sustained_streams_ratio": ratio(results, "concurrent_stream", "rps_sustained", name, "proxy"),
            "stream_cpu_capacity_ratio": ratio(
                results, "concurrent_stream", "cpu_capacity_rps", name, "proxy"
            ),
            "added_cpu_us_per_event": difference(
                results, "concurrent_stream", "cpu_us_per_event", name, "proxy"
            ),
        }
    return found


# (goal key, figure of versus_proxy, what is measured, "max" or "min", the bound)
PROXY_GOALS = (
    ("added_cpu_us_per_streamed_event_over_proxy", "added_cpu_us_per_event", "µs", "max", GOAL_EVENT_CPU_US),
    ("streams_per_s_ratio_to_proxy", "sustained_streams_ratio", "of the proxy's", "min", GOAL_STREAMS_RATIO),
    (
        "added_ttfb_p50_ms_1_caller_over_proxy",
        "added_ttfb_p50_ms_1_caller",
        "ms",
        "max",
        GOAL_TTFB_OVER_PROXY_MS,
    ),
    ("rps_ratio_to_proxy", "sustained_rps_ratio", "of the proxy's", "min", GOAL_RPS_RATIO),
    ("added_p50_ms_1_caller_over_proxy", "added_p50_ms_1_caller", "ms", "max", GOAL_P50_OVER_PROXY_MS),
)


def goals(
    results: dict[str, dict[str, Any]], proxy: dict[str, dict[str, float | None]], peak_rss_mb: float | None
) -> dict[str, dict[str, Any]]:
    """Each goal: its bound, the measured figure (the worst dialect's), whether every dialect
    measured met it, and the figure per dialect."""
    found: dict[str, dict[str, Any]] = {}
    for key, name, unit, side, bound in PROXY_GOALS:
        by_dialect = {dialect: figures.get(name) for dialect, figures in proxy.items()}
        values = [v for v in by_dialect.values() if v is not None]
        worst = (max(values) if side == "max" else min(values)) if values else None
        met = bool(values) and len(values) == len(by_dialect)
        met = met and all(v <= bound if side == "max" else v >= bound for v in values)
        sign = "<=" if side == "max" else ">="
        found[key] = {
            "goal": f"{sign} {bound} {unit}",
            "measured": worst,
            "met": met,
            "by_dialect": by_dialect,
        }
    found["peak_rss_mb"] = {
        "goal": f"<= {GOAL_PEAK_RSS_MB:.0f} MB",
        "measured": peak_rss_mb,
        "met": peak_rss_mb is not None and peak_rss_mb <= GOAL_PEAK_RSS_MB,
    }
    return found | earlier_goals(results)


def earlier_goals(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The goals before issue 20, for promptdeck's Fetch Hive endpoint against the upstream alone."""
    added_p50 = difference(results, "single_plain", "p50_ms", "promptdeck", "direct")
    added_ttfb = difference(results, "single_stream", "ttfb_p50_ms", "promptdeck", "direct")
    rps = figure(results, "concurrent_plain", "promptdeck", "rps")
    return {
        "added_p50_ms_1_caller": {
            "goal": f"< {GOAL_ADDED_P50_MS} ms",
            "measured": added_p50,
            "met": added_p50 is not None and added_p50 < GOAL_ADDED_P50_MS,
        },
        "added_ttfb_p50_ms_1_caller": {
            "goal": f"< {GOAL_ADDED_TTFB_MS} ms",
            "measured": added_ttfb,
            "met": added_ttfb is not None and added_ttfb < GOAL_ADDED_TTFB_MS,
        },
        "rps_32_callers_one_core": {
            "goal": f">= {GOAL_RPS:.0f} req/s",
            "measured": rps,
            "met": rps is not None and rps >= GOAL_RPS,
        },
    }
