"""The run series of /metrics, updated once per run as it ends (a `RunObserver`).

Everything comes from the finished `RunRecord`: status and error code, latencies, tokens, cost,
the upstream attempts (their durations, retries and fallbacks), the response cache's hits. No
I/O: a run costs a few dictionary look-ups and counter updates (each label set's children are
kept here, not looked up through prometheus-client's locked `labels()` every time).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from promptdeck.domain.runs import RunRecord
from promptdeck.engine.metric_labels import LABELS, BoundedLabels, run_labels

if TYPE_CHECKING:
    from promptdeck.engine.invoke import InvokeRequest

# Seconds: a cached answer or a refusal (milliseconds) to a long reasoning call (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TOKEN_KINDS = ("input", "cached_input", "cache_write_input", "output", "reasoning")
# Error codes of a refusal by promptdeck's own limits (rate limits now; budgets when they exist).
REFUSALS = frozenset({"too_many_requests", "budget_exceeded"})
CIRCUIT_OPEN = "circuit_open"  # an attempt the breaker refused: no upstream call to time
ERROR_CODES = 64  # distinct error codes as labels; more fold into (other)


class Labelled:
    """A labelled metric's children, cached by label values (bounded by the callers' labels)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return child


class RunMetrics:
    """The run series, in `registry`; `run_ended` is the engine's observer hook."""

    def __init__(self, registry: CollectorRegistry, label_sets: int) -> None:
        self.labels = BoundedLabels(label_sets)
        self._codes = BoundedLabels(ERROR_CODES, kept=0)

        def counter(name: str, doc: str, *extra: str) -> Labelled:
            return Labelled(Counter(name, doc, (*LABELS, *extra), registry=registry))

        def histogram(name: str, doc: str, *extra: str) -> Labelled:
            metric = Histogram(name, doc, (*LABELS, *extra), registry=registry, buckets=LATENCY_BUCKETS)
            return Labelled(metric)

        self.runs = counter(
            "promptdeck_runs", "Runs ended, by status and error code.", "status", "error_code"
        )
        self.duration = histogram("promptdeck_run_duration_seconds", "A run's whole duration.")
        self.ttft = histogram(
            "promptdeck_run_time_to_first_token_seconds", "From a run's start to its first text or reasoning."
        )
        self.attempts = histogram(
            "promptdeck_upstream_attempt_duration_seconds",
            "One upstream call of a run (provider and model: the attempt's), by outcome.",
            "outcome",
        )
        self.tokens = counter("promptdeck_tokens", "Tokens used, by kind.", "kind")
        self.cost = counter("promptdeck_cost_usd", "What the runs cost, in US dollars.")
        self.retries = counter("promptdeck_retries", "Upstream calls made again after a failure.")
        self.fallbacks = counter(
            "promptdeck_fallbacks", "Fallback models called after the variant's own failed."
        )
        self.cache_hits = counter("promptdeck_cache_hits", "Runs answered from the response cache.")
        self.saved = counter(
            "promptdeck_cache_saved_cost_usd", "What the response cache's hits saved, in USD."
        )
        self.refusals = counter(
            "promptdeck_refusals", "Runs refused by promptdeck's own limits (rate limits, budgets).", "code"
        )

    def run_ended(self, record: RunRecord, request: InvokeRequest) -> None:
        labels = self.labels.bounded(run_labels(record))
        code = self._codes.bounded((record.error_code,))[0] if record.error_code else ""
        self.runs(*labels, record.status, code).inc()
        self.duration(*labels).observe(record.duration_ms / 1000)
        if record.ttft_ms is not None:
            self.ttft(*labels).observe(record.ttft_ms / 1000)
        for kind, count in zip(TOKEN_KINDS, _token_counts(record), strict=True):
            if count:
                self.tokens(*labels, kind).inc(count)
        if record.cost:
            self.cost(*labels).inc(record.cost)
        if record.cache_hit:
            self.cache_hits(*labels).inc()
            if record.saved_cost:
                self.saved(*labels).inc(record.saved_cost)
        if code in REFUSALS:
            self.refusals(*labels, code).inc()
        if record.attempts:
            self._attempts(record, labels, record.attempts)

    def _attempts(self, record: RunRecord, labels: tuple[str, ...], attempts: list[dict[str, Any]]) -> None:
        retries = 0
        fallbacks: set[int] = set()
        for attempt in attempts:
            if attempt.get("attempt", 1) > 1:
                retries += 1
            if attempt.get("fallback"):
                fallbacks.add(attempt["fallback"])
            if attempt.get("error_code") == CIRCUIT_OPEN:
                continue
            provider, model = str(attempt.get("provider", "")), str(attempt.get("model", ""))
            own = self.labels.bounded((labels[0], labels[1], provider, model, labels[4]))
            self.attempts(*own, attempt.get("status", "")).observe(attempt.get("duration_ms", 0.0) / 1000)
        if retries:
            self.retries(*labels).inc(retries)
        if fallbacks:
            self.fallbacks(*labels).inc(len(fallbacks))


# A run's token counts in TOKEN_KINDS' order, in one call.
_token_counts = operator.attrgetter(
    "input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens"
)
