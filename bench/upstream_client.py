"""What an upstream call costs the client alone: aiohttp's `ClientSession` against promptdeck's
own (`providers/http_client.py`), each calling the fake upstream on loopback, in one process.

For each client, in turn and `--repetitions` times: small JSON answers one at a time, then
with 32 concurrent callers, then 20-chunk event streams read chunk by chunk; the figure is
this process's CPU per call (`time.process_time`), so the upstream's own work is not in it.
The client process is pinned to core 1 and the upstream to core 0 (`--no-pin` to leave them).

    .venv/bin/python bench/upstream_client.py [--calls 5000] [--repetitions 3]

Prints a table (the median of the repetitions, and their range). See bench/README.md, "The
upstream client".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import uvloop

from gateway_processes import start_upstream, stop_process
from promptdeck.providers.http_client import UpstreamClient

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
PLAIN = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi " * 40}], "max_tokens": 64})
STREAMED = orjson.dumps({**orjson.loads(PLAIN), "stream": True})
Call = Callable[[bytes], Awaitable[int]]  # sends a body, returns the chunks it read


async def cpu_per_call(call: Call, body: bytes, calls: int, callers: int) -> float:
    async def caller(count: int) -> None:
        for _ in range(count):
            await call(body)

    await caller(200)  # warm the connections
    started = time.process_time()
    await asyncio.gather(*(caller(calls // callers) for _ in range(callers)))
    return (time.process_time() - started) / (calls // callers * callers) * 1e6


async def measure(url: str, calls: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession(headers=HEADERS) as session:

        async def with_aiohttp(body: bytes) -> int:
            async with session.post(url, data=body) as response:
                return sum([1 async for _ in response.content.iter_any()])

        figures["aiohttp"] = await each_shape(with_aiohttp, calls)
    ours = UpstreamClient()

    async def with_ours(body: bytes) -> int:
        response = await ours.post(url, body, HEADERS, connect_timeout=5, silence=60)
        return sum([1 async for _ in response])

    figures["promptdeck"] = await each_shape(with_ours, calls)
    await ours.aclose()
    return figures


async def each_shape(call: Call, calls: int) -> dict[str, float]:
    return {
        "JSON, 1 caller": await cpu_per_call(call, PLAIN, calls, 1),
        "JSON, 32 callers": await cpu_per_call(call, PLAIN, calls, 32),
        "20-chunk stream, 32 callers": await cpu_per_call(call, STREAMED, calls // 4, 32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true")
    options = parser.parse_args()
    if not options.no_pin:
        os.sched_setaffinity(0, {1})
    upstream, port = start_upstream(None if options.no_pin else 0, 20, 0.0)
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        runs = [uvloop.run(measure(url, options.calls)) for _ in range(options.repetitions)]
    finally:
        stop_process(upstream)
    print("| CPU per call (µs), median (range) | aiohttp | promptdeck's client |")
    print("|---|---:|---:|")
    for shape in runs[0]["aiohttp"]:
        cells = []
        for client in ("aiohttp", "promptdeck"):
            values = [run[client][shape] for run in runs]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        print(f"| {shape} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
