"""What /metrics costs in CPU, in this process: `RunMetrics.run_ended` for a run answered on its
first attempt, the request middleware's count and time of one answer (its `note`, and the whole
middleware around an app that answers at once), and a scrape; each with the series of one
process (plain numbers, metric_series.py) and with prometheus-client's own (what several
workers use, and what one process used before).

    .venv/bin/python bench/metrics_cost.py            # a few seconds
    .venv/bin/python bench/metrics_cost.py --number 200000

The full picture (requests/s with metrics on and off) is `gateway_overhead.py --metrics-off`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from collections.abc import Callable

from prometheus_client import generate_latest
from starlette.types import Message, Receive, Scope, Send

from promptdeck.engine.metrics_registry import Metrics
from promptdeck.surfaces.request_metrics import RequestMetrics
from sample_run import a_run

INVOKE = "/v1/prompt/invoke"


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def sent(message: Message) -> None:
    return None


async def received() -> Message:
    return {"type": "http.request", "body": b""}


def per_call(run: Callable[[], object], number: int) -> float:
    """µs a call, the best of five rounds (the least disturbed by other work on the machine)."""
    return min(timeit.repeat(run, number=number, repeat=5)) / number * 1e6


def middleware_cost(app: RequestMetrics, number: int) -> float:
    """µs the whole middleware adds to a request, over calling the app directly."""
    scope = {"type": "http", "method": "POST", "path": INVOKE}

    async def rounds(asgi: object) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(number):
                await asgi(scope, received, sent)  # type: ignore[operator]
            best = min(best, time.perf_counter() - started)
        return best / number * 1e6

    async def both() -> float:
        return await rounds(app) - await rounds(answer)

    return asyncio.run(both())


def measure(shared: bool, number: int) -> dict[str, float]:
    metrics = Metrics(100, shared=shared)
    counted = RequestMetrics(answer, metrics, [INVOKE])
    run = a_run()
    scope = {"type": "http", "method": "POST", "path": INVOKE}
    for n in range(20):  # twenty label sets in the scrape, as a small catalog makes
        other = a_run()
        other.deployment = f"deployment-{n}"
        metrics.runs.run_ended(other, None)  # type: ignore[arg-type]  # the request is not read
    return {
        "run_ended": per_call(lambda: metrics.runs.run_ended(run, None), number),  # type: ignore[arg-type]
        "request note": per_call(lambda: counted.note(scope, 200, 0.004), number),
        "request middleware": middleware_cost(counted, number // 4),
        # The registry's text (in shared mode, not the multiprocess files): the process series too.
        "scrape": per_call(lambda: generate_latest(metrics.registry), max(number // 1000, 10)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=50_000, help="calls per round")
    number = parser.parse_args().number
    plain, shared = measure(False, number), measure(True, number)
    print(f"{'µs a call':22} {'one process':>12} {'prometheus-client':>18}")
    for name in plain:
        print(f"{name:22} {plain[name]:12.2f} {shared[name]:18.2f}")


if __name__ == "__main__":
    main()
