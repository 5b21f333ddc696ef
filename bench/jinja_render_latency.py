"""What rendering a Jinja2 version costs through the worker pool (engine/template_renders.py),
against the thread the engine used before it (`asyncio.to_thread` of the domain's render, which
keeps time with a trace function). Both in this process, on uvloop, in alternating rounds.

    .venv/bin/python bench/jinja_render_latency.py [--rounds 15] [--renders 300]

Prints, per way, the median and the best round's wall time per render, and the CPU the server's
own process spent per render (the pool's workers are other processes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from promptdeck.domain.inputs import render_messages, resolve_inputs
from promptdeck.domain.prompts import parse_spec
from promptdeck.engine import template_renders

SPEC = parse_spec(
    {
        "model": "local/m",
        "template_syntax": "jinja2",
        "messages": [
            {"role": "system", "content": "You are {{ who }}."},
            {
                "role": "user",
                "content": "{% for i in items %}{{ loop.index }}. {{ i | title }}\n{% endfor %}",
            },
        ],
        "inputs": {"who": "string", "items": "json"},
    }
)
VALUES = resolve_inputs(SPEC, {"who": "a bot", "items": ["apples", "pears", "plums"]})


async def measure(rounds: int, renders: int) -> None:
    template_renders.open_pool()
    await asyncio.sleep(1.5)  # the zygote and the spare workers start
    ways: dict[str, Callable[[], Awaitable[Any]]] = {
        "worker pool": lambda: template_renders.render_messages(SPEC, VALUES),
        "thread (before)": lambda: asyncio.to_thread(render_messages, SPEC, VALUES),
    }
    wall: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for way in ways.values():
        for _ in range(renders):
            await way()
    for _ in range(rounds):
        for name, way in ways.items():
            started, used = time.perf_counter(), time.process_time()
            for _ in range(renders):
                await way()
            wall[name].append((time.perf_counter() - started) / renders * 1e6)
            cpu[name].append((time.process_time() - used) / renders * 1e6)
    await template_renders.close_pool()
    print("| way | median µs/render | best round | server CPU µs/render |\n|---|---|---|---|")
    for name in ways:
        print(
            f"| {name} | {statistics.median(wall[name]):.0f} | {min(wall[name]):.0f} "
            f"| {statistics.median(cpu[name]):.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--renders", type=int, default=300)
    args = parser.parse_args()
    uvloop.run(measure(args.rounds, args.renders))


if __name__ == "__main__":
    main()
