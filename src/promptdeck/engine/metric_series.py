"""Counters and histograms for /metrics, kept as plain numbers by label values: a run or a
request updates a few dictionary entries, not prometheus-client's objects.

prometheus-client takes a lock on every `inc` and `observe` and walks a histogram's buckets one
by one: some 1 µs an update, ten of them for a run. Here an update is a dictionary look-up and
an addition (a histogram's bucket found by bisection), with no lock: every update happens on the
event loop's thread (runs end there, requests are answered there, the run writer's batches end
there), and so does the scrape that reads them. Were one ever updated from another thread, it
could at worst lose a count to a race, never break a scrape, which reads a copy of the label
sets. Each series is a prometheus-client `Collector`
that, when scraped, gives the same samples as its `Counter` or `Histogram` would
(`_total`/`_bucket`/`_count`/`_sum`/`_created`, labels in the same order), so the scrape's text is
unchanged.

Several worker processes (`PROMETHEUS_MULTIPROC_DIR`) need prometheus-client's own metrics,
which keep their values in shared memory-mapped files: `SharedCounter` and `SharedHistogram`
offer the same two calls over them (their label children cached).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


def created_wanted() -> bool:
    """Whether `_created` samples are shown: prometheus-client's own rule (its environment variable)."""
    flag = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower()
    return flag not in ("true", "1", "t")


class CounterChild(Protocol):
    def inc(self, amount: float = 1.0) -> None: ...


class HistogramChild(Protocol):
    def observe(self, value: float) -> None: ...


class CounterSeries(Protocol):
    def inc(self, labels: Labels, amount: float = 1.0) -> None: ...

    def child(self, labels: Labels) -> CounterChild:
        """The label set's own counter, for a caller that keeps it (as `Counter.labels()`'s)."""
        ...


class HistogramSeries(Protocol):
    def observe(self, labels: Labels, value: float) -> None: ...

    def child(self, labels: Labels) -> HistogramChild: ...


class Count:
    """One label set's count."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Buckets:
    """One label set's histogram: the count in each bucket (not cumulative; +Inf last) and the
    sum. A value goes in the first bucket whose bound is at least the value, as in prometheus'
    (but a NaN, which no duration is, in the first, where prometheus' counts it in none)."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1.0
        self.sum += value


Child = TypeVar("Child", Count, Buckets)


class _Series(Collector, Generic[Child]):
    """A family's label sets in the order first updated: the scrape shows no others."""

    kind = ""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self.children: dict[Labels, Child] = {}
        self.show_created = created_wanted()
        registry.register(self)
        if not self.labelnames:  # an unlabelled series is shown from the start, as prometheus' is
            self.child(())

    def child(self, labels: Labels) -> Child:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.new()
        return child

    def new(self) -> Child:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        """The family without samples: the registry refuses a second series of the same name."""
        return [Metric(self.name, self.doc, self.kind)]

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.doc, self.kind)
        for labels, child in list(self.children.items()):  # a copy: nothing can change it midway
            named = dict(zip(self.labelnames, labels, strict=True))
            family.samples.extend(self.samples(child, named))
            if self.show_created:
                family.samples.append(Sample(self.name + "_created", named, child.created))
        yield family

    def samples(self, child: Child, named: dict[str, str]) -> list[Sample]:
        raise NotImplementedError


class PlainCounter(_Series[Count]):
    """A counter (`name` without `_total`, as prometheus-client's `Counter` takes it)."""

    kind = "counter"

    def new(self) -> Count:
        return Count()

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        (self.children.get(labels) or self.child(labels)).value += amount

    def samples(self, child: Count, named: dict[str, str]) -> list[Sample]:
        return [Sample(self.name + "_total", named, child.value)]


class PlainHistogram(_Series[Buckets]):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.bounds = tuple(float(bound) for bound in buckets)
        # The `le` labels, written as prometheus-client writes them (0.005, 1.0, +Inf).
        self.les = (*(floatToGoString(bound) for bound in self.bounds), "+Inf")  # type: ignore[no-untyped-call]
        super().__init__(name, doc, labelnames, registry)

    def new(self) -> Buckets:
        return Buckets(self.bounds)

    def observe(self, labels: Labels, value: float) -> None:
        child = self.children.get(labels) or self.child(labels)
        child.counts[bisect_left(self.bounds, value)] += 1.0  # Buckets.observe, one call fewer
        child.sum += value

    def samples(self, child: Buckets, named: dict[str, str]) -> list[Sample]:
        found: list[Sample] = []
        seen = 0.0
        for le, count in zip(self.les, child.counts, strict=True):
            seen += count
            found.append(Sample(self.name + "_bucket", {**named, "le": le}, seen))
        found.append(Sample(self.name + "_count", named, seen))
        found.append(Sample(self.name + "_sum", named, child.sum))
        return found


class SharedCounter:
    """Several workers: prometheus-client's `Counter`, its children cached by label values."""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.metric = Counter(name, doc, labelnames, registry=registry)
        self.children: dict[Labels, Any] = {} if labelnames else {(): self.metric}

    def child(self, labels: Labels) -> CounterChild:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return cast(CounterChild, child)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.child(labels).inc(amount)


class SharedHistogram:
    """Several workers: prometheus-client's `Histogram`, its children cached by label values."""

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.metric = Histogram(name, doc, labelnames, registry=registry, buckets=buckets)
        self.children: dict[Labels, Any] = {} if labelnames else {(): self.metric}

    def child(self, labels: Labels) -> HistogramChild:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return cast(HistogramChild, child)

    def observe(self, labels: Labels, value: float) -> None:
        self.child(labels).observe(value)


class SeriesMaker:
    """Makes a server's counters and histograms in its registry: plain ones in one process,
    prometheus-client's when several share `PROMETHEUS_MULTIPROC_DIR`."""

    def __init__(self, registry: CollectorRegistry, shared: bool) -> None:
        self.registry, self.shared = registry, shared

    def counter(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> CounterSeries:
        kind = SharedCounter if self.shared else PlainCounter
        return kind(name, doc, labelnames, self.registry)

    def histogram(
        self, name: str, doc: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> HistogramSeries:
        kind = SharedHistogram if self.shared else PlainHistogram
        return kind(name, doc, labelnames, self.registry, buckets)
