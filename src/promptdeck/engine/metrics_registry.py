"""A server's Prometheus metrics: its own registry, the series updated as things happen (runs,
HTTP requests, the run writer's batches), and the state read when scraped (the writer's queue,
the circuit breakers). docs/operations.md lists every series.

Each server has its own `CollectorRegistry`, so several servers in one process (the tests) do
not mix. In one process its counters and histograms are plain numbers turned into samples when
scraped (metric_series.py: no lock, a few dictionary updates a run or a request). With several
worker processes (uvicorn `--workers`, or a process manager's), each would keep its own: when
`PROMETHEUS_MULTIPROC_DIR` is set they are prometheus-client's own instead, which keep their
values in memory-mapped files in that directory, and a scrape of any worker sums every
worker's (`MultiProcessCollector`). Those pay prometheus-client's locks, in the one mode that
needs what they do. State read at scrape time cannot reach across workers, so in that mode each
worker copies its own into gauges every second, summed over the live workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from promptdeck.engine.circuit import CircuitBreakers
from promptdeck.engine.metric_series import SeriesMaker
from promptdeck.engine.run_metrics import LATENCY_BUCKETS, RunMetrics
from promptdeck.store.run_writer import RunWriter

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_STATES = ("open", "half_open")
REFRESH_SECONDS = 1.0  # how often a worker copies its state into the shared gauges
QUEUE = ("promptdeck_run_writer_queue_depth", "Finished runs waiting for the run writer.")
BREAKERS = (
    "promptdeck_circuit_breakers",
    "Upstreams (a workspace's provider at one URL) whose circuit is open or half-open, by provider.",
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR) or os.environ.get(MULTIPROCESS_DIR.lower()) or None


class Metrics:
    """Built once per server; `watch` names what the scrape-time series read."""

    def __init__(self, label_sets: int, shared: bool | None = None) -> None:
        """`shared`: prometheus-client's own series, as with several workers (by default, when
        PROMETHEUS_MULTIPROC_DIR is set)."""
        self.registry = CollectorRegistry()
        self.shared = multiprocess_dir() is not None if shared is None else shared
        make = SeriesMaker(self.registry, self.shared)
        self.runs = RunMetrics(make, label_sets)
        self.http_requests = make.counter(
            "promptdeck_http_requests",
            "HTTP requests answered, by method, route and status.",
            ("method", "route", "status"),
        )
        self.http_duration = make.histogram(
            "promptdeck_http_request_duration_seconds",
            "From a request's arrival to the end of its answer (a stream's included).",
            LATENCY_BUCKETS,
            ("method", "route"),
        )
        self._batches = make.histogram(
            "promptdeck_run_writer_batch_duration_seconds",
            "Writing one batch of runs to the database.",
            BATCH_BUCKETS,
        )
        self._batch_runs = make.counter(
            "promptdeck_run_writer_runs", "Runs the run writer wrote to the database."
        )
        self._writer: RunWriter | None = None
        self._breakers: CircuitBreakers | None = None
        self._providers: tuple[str, ...] = ()
        self._refresher: asyncio.Task[None] | None = None
        self._gauges: dict[str, Gauge] = {}
        if self.shared:
            self._gauges = {
                name: Gauge(name, doc, labels, registry=self.registry, multiprocess_mode="livesum")
                for (name, doc), labels in ((QUEUE, ()), (BREAKERS, ("provider", "state")))
            }
        else:
            ProcessCollector(registry=self.registry)
            self.registry.register(_ScrapedState(self))

    def watch(self, writer: RunWriter, breakers: CircuitBreakers, providers: tuple[str, ...]) -> None:
        self._writer, self._breakers, self._providers = writer, breakers, providers

    def batch_written(self, runs: int, seconds: float) -> None:
        """The run writer's hook after each batch (store/ imports no prometheus)."""
        self._batches.observe((), seconds)
        self._batch_runs.inc((), runs)

    def queue_depth(self) -> int:
        return self._writer.snapshot().queued if self._writer is not None else 0

    def breaker_counts(self) -> dict[tuple[str, str], int]:
        """Circuits open and half-open per provider; every configured provider, zeros included."""
        counts = {(provider, state): 0 for provider in self._providers for state in BREAKER_STATES}
        if self._breakers is not None:
            for upstream, state in self._breakers.states().items():
                if state in BREAKER_STATES:
                    provider = upstream.split("|")[1] if upstream.count("|") >= 2 else "(unknown)"
                    counts[provider, state] = counts.get((provider, state), 0) + 1
        return counts

    def exposition(self) -> bytes:
        """The scrape's body, in Prometheus' text format: every worker's series when shared."""
        if not self.shared:
            return generate_latest(self.registry)
        self._refresh()
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone)  # type: ignore[no-untyped-call]
        return generate_latest(everyone)

    # ── several workers: each copies its state into the shared gauges ──

    def start(self) -> None:
        if self.shared:
            self._refresh()
            self._refresher = asyncio.create_task(self._refresh_forever(), name="metrics-refresher")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self.shared and (directory := multiprocess_dir()):
            # This worker's share of the live gauges stops counting.
            mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self._refresh()

    def _refresh(self) -> None:
        self._gauges[QUEUE[0]].set(self.queue_depth())
        breakers = self._gauges[BREAKERS[0]]
        for (provider, state), count in self.breaker_counts().items():
            breakers.labels(provider, state).set(count)


class _ScrapedState(Collector):
    """One process: the writer's queue and the breakers, read as the scrape happens."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*QUEUE, value=self.metrics.queue_depth())
        breakers = GaugeMetricFamily(*BREAKERS, labels=("provider", "state"))
        for (provider, state), count in self.metrics.breaker_counts().items():
            breakers.add_metric((provider, state), count)
        yield breakers

    def describe(self) -> list[Any]:
        return []
