"""`gateway_overhead.py --traces`: promptdeck with OpenTelemetry traces on, beside the same
promptdeck with them off, in one run.

A second `promptdeck serve` (same core, same upstream, its own data directory) exports every
run's spans over OTLP/HTTP to `otlp_sink.py` on loopback, set up only through the standard
OTEL_* variables, as an operator would. Its targets are the untraced ones with `_traces`
appended to their names; issue 19's goal: with traces on, at least 90 % of the requests per
second with traces off (32 callers, not streamed), in every dialect measured.
"""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway_processes import HERE, HOST, promptdeck_server, start_listener, stop_process
from gateway_targets import Target, promptdeck_target, target_name

SERVER = "promptdeck_traces"  # the traced server's key among the measured processes
GOAL_TRACES_RPS_RATIO = 0.90
# Export often, so the measured phases carry the exporter's whole cost (the default is 5 s).
EXPORT_EVERY_MS = "500"


def traced_name(dialect: str) -> str:
    return target_name(dialect) + "_traces"


@contextlib.contextmanager
def traced_promptdeck(
    core: int | None, sink_core: int | None, upstream_port: int, data_dir: Path
) -> Iterator[tuple[int, int, str, int]]:
    """The OTLP sink and a promptdeck exporting to it: (server pid, port, invoke key, sink port)."""
    sink, sink_port = start_listener(
        "the OTLP sink", sink_core, [sys.executable, str(HERE / "otlp_sink.py"), "--port", "0"]
    )
    try:
        traces_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{sink_port}",
            "OTEL_SERVICE_NAME": "promptdeck-bench",
            "OTEL_BSP_SCHEDULE_DELAY": EXPORT_EVERY_MS,
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        with promptdeck_server(core, upstream_port, data_dir, extra_env=traces_env) as (server, port, key):
            yield server.pid, port, key, sink_port
    finally:
        stop_process(sink)


def traced_targets(port: int, key: str, dialects: list[str]) -> list[Target]:
    return [
        replace(promptdeck_target(port, key, dialect), name=traced_name(dialect), server=SERVER)
        for dialect in dialects
    ]


def sink_stats(sink_port: int) -> dict[str, Any]:
    """How many exports and spans reached the sink (checked: traces really left promptdeck)."""
    with urllib.request.urlopen(f"http://{HOST}:{sink_port}/stats", timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())
        return found


def traces_figures(
    results: dict[str, dict[str, Any]], dialects: list[str], sink: dict[str, Any]
) -> dict[str, Any]:
    """Per dialect, traced requests/s as a share of untraced (32 callers; plain and streamed),
    and whether the goal holds."""
    ratios: dict[str, Any] = {}
    for dialect in dialects:
        for phase in ("concurrent_plain", "concurrent_stream"):
            off = results.get(phase, {}).get(target_name(dialect), {}).get("rps")
            on = results.get(phase, {}).get(traced_name(dialect), {}).get("rps")
            if off and on is not None:
                ratios[f"{dialect}/{phase}"] = round(on / off, 3)
    plain = [v for k, v in ratios.items() if k.endswith("/concurrent_plain")]
    return {
        "rps_ratio": ratios,
        "goal_rps_ratio": GOAL_TRACES_RPS_RATIO,
        "goal_met": bool(plain) and min(plain) >= GOAL_TRACES_RPS_RATIO,
        "sink": sink,
    }


def traces_markdown(figures: dict[str, Any]) -> str:
    lines = ["| traces on / off (req/s) | ratio |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in figures["rps_ratio"].items()]
    met = "met" if figures["goal_met"] else "**not met**"
    lines += [
        "",
        f"Goal: at least {figures['goal_rps_ratio']:.0%} of the untraced requests/s (32 callers, not "
        f"streamed): {met}. The sink received {figures['sink'].get('spans')} spans in "
        f"{figures['sink'].get('exports')} exports.",
    ]
    return "\n".join(lines)
