"""How long the run writer holds the event loop: runs are put at a steady rate (one caller's,
~1,000/s) into a real RunWriter over a SQLite file while a ticker asks the loop for a turn every
millisecond; each turn's lateness is time the loop could not serve a request. Prints the
lateness p50/p99/max and the longest stretches, per run of the writer's default batch shape.

    .venv/bin/python bench/writer_loop_stall.py [--runs 3000] [--rate 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from promptdeck.domain.runs import new_id, new_request_id
from promptdeck.store.database import create_engine, migrate
from promptdeck.store.run_writer import RunWriter
from sample_run import a_run

INPUTS = {"text": "Summarize the following paragraph in one sentence. " * 4, "tone": "plain"}
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant. " * 3},
    {"role": "user", "content": "Summarize: " + "lorem ipsum dolor sit amet " * 12},
]


async def measure(url: str, runs: int, rate: float) -> list[float]:
    """The lateness (ms) of every 1 ms tick while `runs` runs are written, less the time other
    processes held the core (the thread's run-queue wait, from schedstat): what is left is this
    process's own work holding the loop, the GIL included."""
    writer = RunWriter(create_engine(url))
    writer.start()
    template = replace(a_run(), inputs=INPUTS, messages=MESSAGES, output="A short summary. " * 6)
    late: list[float] = []
    done = False

    schedstat = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")

    def runnable_waiting() -> float:
        """Seconds the loop's thread has waited, runnable, for a core other processes held."""
        return int(schedstat.read_text().split()[1]) / 1e9

    async def tick() -> None:
        while not done:
            before, waited = time.perf_counter(), runnable_waiting()
            await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - before - (runnable_waiting() - waited)
            late.append((elapsed - 0.001) * 1000)

    ticker = asyncio.create_task(tick())
    gap = 1 / rate
    start = time.perf_counter()
    for n in range(runs):
        await writer.put(replace(template, id=new_id(), request_id=new_request_id()))
        await asyncio.sleep(max(0.0, start + (n + 1) * gap - time.perf_counter()))
    await writer.flush()
    done = True
    await ticker
    await writer.stop()
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--priority", type=int, default=15, help="nice -N when root, against other load (0: off)"
    )
    args = parser.parse_args()
    if args.priority and os.geteuid() == 0:
        os.nice(-args.priority)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for round_ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite+aiosqlite:///{Path(directory) / 'runs.db'}"
            migrate(url)
            late = asyncio.run(measure(url, args.runs, args.rate))
        cuts = statistics.quantiles(late, n=100)
        worst = sorted(late)[-5:]
        print(
            f"round {round_ + 1}: {len(late)} ticks, lateness p50 {cuts[49]:.3f} ms, p99 {cuts[98]:.3f} ms,"
            f" max {max(late):.2f} ms; over 1 ms: {sum(x > 1 for x in late)},"
            f" over 2 ms: {sum(x > 2 for x in late)};"
            f" worst five {', '.join(f'{w:.2f}' for w in worst)} ms"
        )


if __name__ == "__main__":
    main()
