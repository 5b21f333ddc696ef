"""What a flood of bad credentials and unknown deployment names costs a live server: memory
that stays, and requests per second.

Starts a real `promptdeck serve` (as bench/gateway_overhead.py does) and sends, over 32
keep-alive connections, in order:

* `repeated`: one bad bearer token, again and again (the cheapest refusal, for reference);
* `random`: a new random token per request, not shaped like a promptdeck key;
* `shaped`: a new random token per request shaped like one (`pd_` + 40 URL-safe characters),
  which the format check cannot refuse: it costs a database look-up and a cache entry;
* `deployments`: a valid `invoke` key with a new unknown deployment name per request.

It reads the server's resident memory (VmRSS) before the first phase and after each, and
reports the growth per phase against the goal (under 20 MB). Every phase has a fixed count and
a time cap; only 127.0.0.1 is contacted.

    .venv/bin/python bench/bad_tokens.py [--quick] [--tokens N] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fake_upstream import run_fast
from gateway_processes import GENERATOR_CORE, PROMPTDECK_CORE, free_port, promptdeck_server
from gateway_targets import DEPLOYMENT, TEXT
from load_client import ConnectionClosed, HttpCaller, build_request, connect

PATH = "/v1/prompt/invoke"
CALLERS = 32
GOAL_GROWTH_MB = 20.0
SETTLE_S = 2.0  # after a phase: the run writer flushes, the allocator returns what it can


@dataclass
class Phase:
    name: str
    count: int
    expected: int  # the HTTP status every answer must have
    request: Callable[[], bytes]


@dataclass
class Figures:
    name: str
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    rps: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    growth_mb: float = 0.0
    capped: bool = False


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (10^6 bytes), from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for process {pid}")


def phases(port: int, key: str, counts: dict[str, int]) -> list[Phase]:
    def invoke(token: str, deployment: str = DEPLOYMENT) -> bytes:
        body = {"deployment": deployment, "streaming": False, "inputs": {"text": TEXT}}
        return build_request(port, PATH, body, {"Authorization": f"Bearer {token}"})

    repeated = invoke("not-a-key-" + secrets.token_hex(8))
    return [
        Phase("repeated", counts["repeated"], 401, lambda: repeated),
        Phase("random", counts["random"], 401, lambda: invoke(secrets.token_hex(16))),
        Phase("shaped", counts["shaped"], 401, lambda: invoke("pd_" + secrets.token_urlsafe(30))),
        Phase("deployments", counts["deployments"], 404, lambda: invoke(key, "no-" + secrets.token_hex(8))),
    ]


async def run_phase(port: int, pid: int, phase: Phase, cap_s: float) -> Figures:
    """Each of the callers sends its next request as soon as its last one was answered."""
    figures = Figures(phase.name, rss_before_mb=rss_mb(pid))
    remaining = phase.count
    deadline = time.perf_counter() + cap_s

    async def caller() -> None:
        nonlocal remaining
        connection: HttpCaller = await connect(port)
        try:
            while remaining > 0:
                if time.perf_counter() > deadline:
                    figures.capped = True
                    return
                remaining -= 1
                try:
                    reply = await asyncio.wait_for(connection.send(phase.request()), 30)
                except (ConnectionClosed, TimeoutError) as exc:
                    note(f"{type(exc).__name__}: {exc}")
                    if connection.transport is not None:
                        connection.transport.close()
                    connection = await connect(port)
                    continue
                if reply.status != phase.expected:
                    note(f"HTTP {reply.status}")
                    continue
                figures.requests += 1
        finally:
            if connection.transport is not None:
                connection.transport.close()

    def note(what: str) -> None:
        figures.errors += 1
        if len(figures.error_samples) < 5:
            figures.error_samples.append(what)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    figures.elapsed_s = round(time.perf_counter() - started, 2)
    figures.rps = round(figures.requests / figures.elapsed_s, 1) if figures.elapsed_s else 0.0
    await asyncio.sleep(SETTLE_S)
    figures.rss_after_mb = rss_mb(pid)
    figures.growth_mb = round(figures.rss_after_mb - figures.rss_before_mb, 1)
    figures.rss_before_mb = round(figures.rss_before_mb, 1)
    figures.rss_after_mb = round(figures.rss_after_mb, 1)
    return figures


async def run_all(port: int, pid: int, key: str, counts: dict[str, int], cap_s: float) -> list[Figures]:
    warm = phases(port, key, {"repeated": 2000, "random": 2000, "shaped": 2000, "deployments": 2000})
    for phase in warm:  # first use of every code path, so that its one-off memory is not counted
        await run_phase(port, pid, phase, cap_s)
    results = []
    for phase in phases(port, key, counts):
        if not phase.count:
            continue
        figures = await run_phase(port, pid, phase, cap_s)
        results.append(figures)
        print(
            f"  {figures.name:<12} {figures.requests:>7} answers in {figures.elapsed_s:>7.2f} s"
            f"  {figures.rps:>8.1f} req/s  RSS {figures.rss_before_mb:.1f} -> {figures.rss_after_mb:.1f} MB"
            f" ({figures.growth_mb:+.1f})  errors {figures.errors}",
            flush=True,
        )
    return results


def markdown(results: list[Figures]) -> str:
    lines = [
        "| phase | requests | req/s | RSS before (MB) | RSS after (MB) | growth (MB) | goal < 20 MB |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for f in results:
        met = "yes" if f.growth_mb < GOAL_GROWTH_MB else "no"
        lines.append(
            f"| {f.name} | {f.requests:,} | {f.rps:,.1f} | {f.rss_before_mb:.1f} | {f.rss_after_mb:.1f} "
            f"| {f.growth_mb:+.1f} | {met} |"
        )
    first, last = results[0].rss_before_mb, results[-1].rss_after_mb
    lines.append(f"\nwhole run: RSS {first:.1f} -> {last:.1f} MB ({last - first:+.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="memory and req/s under bad tokens and unknown deployments")
    parser.add_argument("--quick", action="store_true", help="a tenth of the counts (0 skips a phase)")
    parser.add_argument("--tokens", type=int, default=200_000, help="random tokens (default 200000)")
    parser.add_argument("--shaped", type=int, default=50_000, help="key-shaped random tokens (50000)")
    parser.add_argument("--deployments", type=int, default=30_000, help="unknown deployment names (30000)")
    parser.add_argument("--repeated", type=int, default=20_000, help="one repeated bad token (20000)")
    parser.add_argument("--cap", type=float, default=600.0, help="time cap per phase in seconds (600)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--output", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    counts = {
        "repeated": args.repeated // scale,
        "random": args.tokens // scale,
        "shaped": args.shaped // scale,
        "deployments": args.deployments // scale,
    }
    cores = os.sched_getaffinity(0)
    pin = not args.no_pin and shutil.which("taskset") is not None and {0, 1} <= cores
    print(f"promptdeck under bad tokens: {counts}, {CALLERS} callers, cap {args.cap:.0f} s, pinned={pin}")
    with tempfile.TemporaryDirectory(prefix="promptdeck-bench-") as tmp:
        # No upstream: every request here is refused before a provider would be called.
        core = PROMPTDECK_CORE if pin else None
        with promptdeck_server(core, free_port(), Path(tmp)) as (server, port, key):
            if pin:
                os.sched_setaffinity(0, {GENERATOR_CORE})
            try:
                results = run_fast(run_all(port, server.pid, key, counts, args.cap))
            finally:
                os.sched_setaffinity(0, cores)
    print()
    print(markdown(results))
    if args.output:
        args.output.write_text(json.dumps([asdict(f) for f in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
