"""Whether promptdeck's throughput holds when the load lasts: 32 callers for `--windows` windows
of 5 s each against one `promptdeck serve` (core 1; the fake upstream and this generator on
core 0), with the run writer's queue, resident memory and requests per second after each
window, then the time the writer takes to drain.

`gateway_overhead.py`'s phases last a few seconds, and the runs a phase leaves queued are
written before the next phase is measured, outside its figures. Here the server's CPU over the
whole load and the drain is divided by the requests served, so the writer's whole share is in
the figure, and a writer that fell behind would show as a growing queue and falling req/s.

    .venv/bin/python bench/sustained_load.py [--windows 8]

Prints one line per window, then the overall figures. See bench/README.md, "Sustained load".
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from cpu_meter import process_cpu_ns
from gateway_processes import promptdeck_server, start_upstream, stop_process, writer_drained, writer_metrics
from gateway_targets import promptdeck_target
from load_client import close_all, closed_loop, connect
from memory_meter import memory_mb

WINDOW_S = 5.0
CALLERS = 32


async def drive(pid: int, port: int, key: str, windows: int) -> None:
    target = promptdeck_target(port, key)
    connections = [await connect(port) for _ in range(CALLERS)]
    await closed_loop(port, connections, target.plain, 2000, 10)  # warm-up
    cpu_before, started, served = process_cpu_ns(pid), time.perf_counter(), 0
    for window in range(windows):
        tally = await closed_loop(port, connections, target.plain, 10**9, WINDOW_S)
        served += len(tally.latencies)
        writer = await writer_metrics(port)
        print(
            f"window {window}: {len(tally.latencies) / tally.elapsed_s:7.0f} req/s, "
            f"{writer.get('queued')} runs queued, RSS {memory_mb(pid)['rss_mb']} MiB",
            flush=True,
        )
    loaded = time.perf_counter() - started
    await writer_drained(port)
    drained = time.perf_counter() - started - loaded
    cpu_us = (process_cpu_ns(pid) - cpu_before) / served / 1000
    print(
        f"overall: {served / loaded:.0f} req/s; drained {drained:.1f} s later; "
        f"{cpu_us:.1f} µs of CPU per request"
    )
    close_all(connections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=8)
    options = parser.parse_args()
    upstream, upstream_port = start_upstream(0, 20, 0.0)
    try:
        with (
            tempfile.TemporaryDirectory() as data,
            promptdeck_server(1, upstream_port, Path(data)) as (
                process,
                port,
                key,
            ),
        ):
            asyncio.run(drive(process.pid, port, key, options.windows))
    finally:
        stop_process(upstream)


if __name__ == "__main__":
    main()
