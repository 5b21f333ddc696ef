"""`gateway_overhead.py --metrics-off`: promptdeck with its Prometheus metrics on (the default:
the `promptdeck*` targets) beside the same promptdeck with `PROMPTDECK_METRICS=off`, in one run.

The second `promptdeck serve` takes the same core and upstream in a data directory of its own;
its targets are the others with `_metrics_off` appended. Issue 19's goal: with metrics on, at
least 95 % of the requests per second with them off (32 callers, not streamed), in every
dialect measured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway_processes import promptdeck_server
from gateway_targets import Target, promptdeck_target, target_name

SERVER = "promptdeck_metrics_off"  # the unmetered server's key among the measured processes
GOAL_METRICS_RPS_RATIO = 0.95


def unmetered_name(dialect: str) -> str:
    return target_name(dialect) + "_metrics_off"


@contextlib.contextmanager
def unmetered_promptdeck(
    core: int | None, upstream_port: int, data_dir: Path
) -> Iterator[tuple[int, int, str]]:
    """A promptdeck with metrics off: (pid, port, invoke key)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    off = {"PROMPTDECK_METRICS": "off"}
    with promptdeck_server(core, upstream_port, data_dir, extra_env=off) as (server, port, key):
        yield server.pid, port, key


def unmetered_targets(port: int, key: str, dialects: list[str]) -> list[Target]:
    return [
        replace(promptdeck_target(port, key, dialect), name=unmetered_name(dialect), server=SERVER)
        for dialect in dialects
    ]


def metrics_figures(results: dict[str, dict[str, Any]], dialects: list[str]) -> dict[str, Any]:
    """Per dialect, requests/s with metrics on as a share of off (32 callers; plain and
    streamed), and whether the goal holds."""
    ratios: dict[str, Any] = {}
    for dialect in dialects:
        for phase in ("concurrent_plain", "concurrent_stream"):
            on = results.get(phase, {}).get(target_name(dialect), {}).get("rps")
            off = results.get(phase, {}).get(unmetered_name(dialect), {}).get("rps")
            if off and on is not None:
                ratios[f"{dialect}/{phase}"] = round(on / off, 3)
    plain = [v for k, v in ratios.items() if k.endswith("/concurrent_plain")]
    return {
        "rps_ratio": ratios,
        "goal_rps_ratio": GOAL_METRICS_RPS_RATIO,
        "goal_met": bool(plain) and min(plain) >= GOAL_METRICS_RPS_RATIO,
    }


def metrics_markdown(figures: dict[str, Any]) -> str:
    lines = ["| metrics on / off (req/s) | ratio |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in figures["rps_ratio"].items()]
    met = "met" if figures["goal_met"] else "**not met**"
    lines += [
        "",
        f"Goal: at least {figures['goal_rps_ratio']:.0%} of the requests/s with metrics off (32 callers, "
        f"not streamed): {met}.",
    ]
    return "\n".join(lines)
