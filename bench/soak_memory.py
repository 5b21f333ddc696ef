"""Whether promptdeck's memory levels off under sustained load.

Starts the fast fake upstream and a real `promptdeck serve` as `gateway_overhead.py` does (the same
modules, imported), sends 300,000 requests to the Fetch Hive endpoint from 32 keep-alive
callers, each alternating non-streaming and streaming requests, and reads the server's resident
memory (VmRSS) after every 50,000, once the run writer has written what they queued. A leak or
a cache without a bound shows as RSS still climbing in the second half of the run; "flat" is
growth from the middle checkpoint to the last one under `--flat-mb` (default 20 MB).

    .venv/bin/python bench/soak_memory.py [--requests 100000] [--save-baseline]

Writes bench/results/soak_memory_latest.json and compares it with
bench/results/soak_memory_baseline.json when that exists. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cpu_meter import background_load
from fake_upstream import run_fast
from figures import change_cell
from gateway_processes import (
    GENERATOR_CORE,
    PROMPTDECK_CORE,
    promptdeck_server,
    start_upstream,
    stop_process,
    writer_drained,
)
from gateway_targets import direct_target, promptdeck_target, sanity_check
from load_client import HttpCaller, Tally, answered, connect
from memory_meter import memory_mb
from run_meta import ROOT, run_meta

RESULTS = Path(__file__).resolve().parent / "results"
DRAIN_TIMEOUT_S = 120.0  # for the run writer to write what a segment queued
SEGMENT_CAP_S = 1800.0  # a segment that takes longer is stopped (and marked), so a run always ends


async def mixed_load(
    port: int, connections: list[HttpCaller], requests: tuple[bytes, bytes], count: int
) -> Tally:
    """`count` requests, each connection sending its next one as soon as its last ended, taking
    turns between the two requests (half the connections start with each), so that about half
    of what is in flight at any time is streamed."""
    tally = Tally()
    remaining = count
    deadline = time.perf_counter() + SEGMENT_CAP_S

    async def caller(slot: int) -> None:
        nonlocal remaining
        turn = slot % 2
        while remaining > 0:
            if time.perf_counter() > deadline:
                tally.capped = True
                return
            remaining -= 1
            turn ^= 1
            try:
                reply = await answered(connections, slot, port, requests[turn], tally)
            except OSError as refused:
                tally.error(f"cannot reconnect: {refused}")
                return
            if reply is None:
                continue
            tally.latencies.append(0)  # counted, not timed: the series would itself grow memory

    started = time.perf_counter()
    await asyncio.gather(*(caller(slot) for slot in range(len(connections))))
    tally.elapsed_s = time.perf_counter() - started
    return tally


async def soak(
    upstream_port: int, port: int, key: str, pid: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    through = promptdeck_target(port, key)
    await sanity_check(direct_target(upstream_port), through)
    connections = [await connect(port) for _ in range(args.callers)]
    series = [{"requests": 0, **memory_mb(pid), "writer": await writer_drained(port, DRAIN_TIMEOUT_S)}]
    print(f"  {0:>9,} requests  RSS {series[0]['rss_mb']:>7.1f} MB", flush=True)
    sent = 0
    try:
        while sent < args.requests:
            count = min(args.checkpoint, args.requests - sent)
            tally = await mixed_load(port, connections, (through.plain, through.streaming), count)
            sent += count
            point: dict[str, Any] = {
                "requests": sent,
                "rps": round(len(tally.latencies) / tally.elapsed_s, 1) if tally.elapsed_s else 0.0,
                "errors": tally.errors,
                "capped": tally.capped,
            }
            point["writer"] = await writer_drained(port, DRAIN_TIMEOUT_S)
            point |= memory_mb(pid)
            if tally.error_samples:
                point["error_samples"] = tally.error_samples
            series.append(point)
            growth = point["rss_mb"] - series[-2]["rss_mb"]
            print(
                f"  {sent:>9,} requests  RSS {point['rss_mb']:>7.1f} MB ({growth:+.1f})  "
                f"{point['rps']:>7.1f} req/s  errors {tally.errors} written {point['writer'].get('written')}",
                flush=True,
            )
            if tally.capped:
                break
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    return series


def figures(series: list[dict[str, Any]], flat_mb: float) -> dict[str, Any]:
    """Growth over the first and the second half of the run; flat if the second's is small."""
    last = series[-1]
    middle = min(series, key=lambda p: abs(p["requests"] - last["requests"] / 2))
    second = round(last["rss_mb"] - middle["rss_mb"], 1)
    return {
        "rss_start_mb": series[0]["rss_mb"],
        "rss_end_mb": last["rss_mb"],
        "hwm_mb": last.get("hwm_mb"),
        "middle_requests": middle["requests"],
        "growth_first_half_mb": round(middle["rss_mb"] - series[0]["rss_mb"], 1),
        "growth_second_half_mb": second,
        "flat_mb": flat_mb,
        "flat": second < flat_mb,
        "errors": sum(p.get("errors", 0) for p in series),
        "runs_failed": last["writer"].get("failed"),
    }


def compare(latest: dict[str, Any], baseline: dict[str, Any]) -> str:
    lines = [
        f"Compared with the baseline of {baseline.get('meta', {}).get('date', '?')}:",
        "",
        "| requests | baseline RSS (MB) | latest RSS (MB) | change |",
        "|---:|---:|---:|---:|",
    ]
    old = {p["requests"]: p for p in baseline.get("series", [])}
    for point in latest["series"]:
        before = old.get(point["requests"])
        if before is not None:
            change = change_cell(before["rss_mb"], point["rss_mb"], "lower", min_delta=10.0)
            lines.append(f"| {point['requests']:,} | {before['rss_mb']} | {point['rss_mb']} | {change} |")
    was, now = baseline.get("figures", {}), latest["figures"]
    if "growth_second_half_mb" in was:
        lines.append("")
        lines.append(
            f"Growth over the second half: baseline {was['growth_second_half_mb']} MB "
            f"(from {was['middle_requests']:,} requests), latest {now['growth_second_half_mb']} MB"
            f" ({'flat' if now['flat'] else 'NOT flat'}: under {now['flat_mb']} MB)."
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="promptdeck's memory under 300,000 requests on loopback.")
    parser.add_argument("--requests", type=int, default=300_000, help="requests in all (default 300000)")
    parser.add_argument("--checkpoint", type=int, default=50_000, help="requests between RSS readings")
    parser.add_argument("--callers", type=int, default=32, help="concurrent callers (default 32)")
    parser.add_argument("--flat-mb", type=float, default=20.0, help="most growth over the second half")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--save-baseline", action="store_true", help="also write the baseline")
    parser.add_argument("--output", type=Path, default=RESULTS / "soak_memory_latest.json")
    parser.add_argument("--baseline", type=Path, default=RESULTS / "soak_memory_baseline.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = os.sched_getaffinity(0)
    pin = not args.no_pin and shutil.which("taskset") is not None and {0, 1} <= cores
    generator_core = GENERATOR_CORE if pin else None
    promptdeck_core = PROMPTDECK_CORE if pin else None
    print(
        f"promptdeck memory soak: {args.requests:,} requests from {args.callers} callers (half streamed), "
        f"RSS every {args.checkpoint:,}, pinned={pin}",
        flush=True,
    )
    started = time.perf_counter()
    idle_load = background_load()
    upstream, upstream_port = start_upstream(generator_core, 8, 0.0)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="promptdeck-soak-") as tmp,
            promptdeck_server(promptdeck_core, upstream_port, Path(tmp)) as (server, port, key),
        ):
            if generator_core is not None:
                os.sched_setaffinity(0, {generator_core})
            try:
                series = run_fast(soak(upstream_port, port, key, server.pid, args))
            finally:
                os.sched_setaffinity(0, cores)
    finally:
        stop_process(upstream)

    report: dict[str, Any] = {
        "meta": {
            **run_meta(pin, idle_load),
            "requests": args.requests,
            "checkpoint": args.checkpoint,
            "callers": args.callers,
            "duration_s": round(time.perf_counter() - started, 1),
        },
        "series": series,
        "figures": figures(series, args.flat_mb),
    }
    found = report["figures"]
    print()
    print(
        f"RSS {found['rss_start_mb']} -> {found['rss_end_mb']} MB (highest {found['hwm_mb']}); growth "
        f"{found['growth_first_half_mb']:+} MB to {found['middle_requests']:,} requests, "
        f"{found['growth_second_half_mb']:+} MB after: {'flat' if found['flat'] else 'NOT flat'} "
        f"(under {args.flat_mb} MB); errors {found['errors']}, runs failed {found['runs_failed']}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    if args.baseline.exists() and not args.save_baseline:
        print()
        print(compare(report, json.loads(args.baseline.read_text())))
    if args.save_baseline:
        args.baseline.write_text(json.dumps(report, indent=2) + "\n")
        print(f"baseline saved: {args.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
