"""What one admission under rate limits costs as its sliding-window logs fill up.

Requests are counted with an exact sliding-window log: each request window (one per limit a call
matches) holds the time of every call admitted in the last 60 s, so at 2,000 calls per second a
window holds 120,000 entries (engine/quota_memory.py: a deque; engine/quota_redis.py: a sorted
set). This measures the backends themselves, without HTTP: the windows are filled to each size
with entries spread over the last 60 s, then `CALLS` admissions are timed on a clock that moves
one entry's spacing per call, the steady state at that rate (each call ages one entry out of
every window and adds one). `REQUEST_WINDOWS` windows per call, as in gateway_quotas.py.

Figures per size: the wall time of one `admit` p50 (Redis: the client, the loopback round trip
and the script), the CPU this process spends per call (Redis: redis-py's), Redis's own time per
script (`INFO commandstats`), and the memory per entry.

    .venv/bin/python bench/quota_window.py   # starts its own throw-away redis-server
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fake_upstream import run_fast
from gateway_processes import start_redis, stop_process
from gateway_quotas import REQUEST_WINDOWS
from load_client import HOST
from promptdeck.engine.quota_backend import WINDOW_SECONDS, QuotaBackend, Window
from promptdeck.engine.quota_memory import MemoryQuotas
from promptdeck.engine.quota_redis import REQUESTS, RedisQuotas

SIZES = (0, 1_000, 10_000, 30_000, 120_000)  # entries per window; 120,000 = 2,000 calls/s
CALLS = 2_000  # timed admissions per size
T0 = 1_900_000_000.0  # the moved clock's start (any time: both backends take it as given)
LIMIT = 1_000_000_000  # never reached: every call is admitted and logged
FILL_CHUNK = 5_000


class Clock:
    def __init__(self) -> None:
        self.now: float = T0

    def __call__(self) -> float:
        return self.now


def spacing(size: int) -> float:
    """Seconds between entries so that `size` of them fill one window (empty: each call alone)."""
    return WINDOW_SECONDS / size if size else WINDOW_SECONDS + 1


def windows() -> list[Window]:
    return [Window(f"bench:{i}:r", LIMIT) for i in range(REQUEST_WINDOWS)]


async def timed_admits(backend: QuotaBackend, clock: Clock, size: int) -> dict[str, float]:
    """`CALLS` admissions in the steady state of `size` entries per window: p50 and mean in µs."""
    step, requests, spent = spacing(size), windows(), []
    cpu = time.process_time_ns()
    for _ in range(CALLS):
        clock.now += step
        started = time.perf_counter_ns()
        admission = await backend.admit(requests, [])
        spent.append(time.perf_counter_ns() - started)
        assert admission.admitted
    cpu = time.process_time_ns() - cpu
    spent.sort()
    return {
        "p50_us": round(spent[len(spent) // 2] / 1000, 2),
        "mean_us": round(sum(spent) / len(spent) / 1000, 2),
        "cpu_us": round(cpu / CALLS / 1000, 2),  # this process's CPU per call (Redis: the client's)
    }


async def memory_costs() -> dict[str, Any]:
    """The in-process backend, filled through its own `admit` (as calls fill it)."""
    found: dict[str, Any] = {}
    for size in SIZES:
        clock = Clock()
        clock.now = T0 - WINDOW_SECONDS
        backend = MemoryQuotas(clock=clock)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        step, requests = spacing(size), windows()
        for _ in range(size):
            clock.now += step
            await backend.admit(requests, [])
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        found[str(size)] = await timed_admits(backend, clock, size)
        if size:
            found[str(size)]["bytes_per_entry"] = round(held / (size * REQUEST_WINDOWS))
    return found


async def redis_costs(redis_port: int) -> dict[str, Any]:
    """The Redis backend (its own database, emptied before each size), filled with pipelined ZADDs."""
    import redis.asyncio as aioredis

    url = f"redis://{HOST}:{redis_port}/1"
    admin = aioredis.Redis.from_url(url)
    found: dict[str, Any] = {}
    try:
        for size in SIZES:
            await admin.flushdb()
            before = (await admin.info("memory"))["used_memory"]
            step = spacing(size)
            for window in windows():
                for start in range(0, size, FILL_CHUNK):
                    entries = {
                        f"{i:032x}": T0 - WINDOW_SECONDS + (i + 1) * step
                        for i in range(start, min(size, start + FILL_CHUNK))
                    }
                    await admin.zadd(REQUESTS + window.key, entries)
            held = (await admin.info("memory"))["used_memory"] - before
            clock = Clock()
            backend = RedisQuotas(url, clock=clock)
            try:
                await backend.admit(windows(), [])  # loads the script: not timed
                clock.now -= step
                await admin.config_resetstat()
                found[str(size)] = await timed_admits(backend, clock, size)
            finally:
                await backend.aclose()
            stats = (await admin.info("commandstats")).get("cmdstat_evalsha", {})
            found[str(size)]["redis_us_per_script"] = stats.get("usec_per_call")
            if size:
                found[str(size)]["bytes_per_entry"] = round(held / (size * REQUEST_WINDOWS))
        await admin.flushdb()
    finally:
        await admin.aclose()
    return found


def window_costs(redis_port: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    log(f"  window costs: {REQUEST_WINDOWS} request windows per call, {CALLS} admissions per size")
    found = {"windows_per_call": REQUEST_WINDOWS, "memory": run_fast(memory_costs())}
    found["redis"] = run_fast(redis_costs(redis_port))
    return found


def window_markdown(costs: dict[str, Any]) -> str:
    lines = [
        f"| entries per window ({costs['windows_per_call']} per call) | in process: admit p50 (µs) "
        "| bytes/entry | Redis: admit p50 (µs) | redis-py CPU/admit (µs) | Redis: script (µs) "
        "| bytes/entry |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        memory, redis = costs["memory"].get(str(size), {}), costs["redis"].get(str(size), {})
        cells = [memory.get("p50_us"), memory.get("bytes_per_entry"), redis.get("p50_us")]
        cells += [redis.get("cpu_us"), redis.get("redis_us_per_script"), redis.get("bytes_per_entry")]
        lines.append(f"| {size:,} | " + " | ".join("—" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="promptdeck-window-") as tmp:
        process, port = start_redis(None, Path(tmp))
        try:
            costs = window_costs(port)
        finally:
            stop_process(process)
    print(window_markdown(costs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
