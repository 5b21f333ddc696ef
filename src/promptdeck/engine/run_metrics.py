"""The run series of /metrics, updated once per run as it ends (a `RunObserver`).

Everything comes from the finished `RunRecord`: status and error code, latencies, tokens, cost,
the upstream attempts (their durations, retries and fallbacks), the response cache's hits. No
I/O, no lock (metric_series.py says why, and what changes with several worker processes). A run
costs one look-up of its label set, whose series (a histogram, a counter by status, by token
kind...) are kept together: each then one small look-up and an addition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptdeck.domain.runs import RunRecord
from promptdeck.engine.metric_labels import LABELS, BoundedLabels, run_labels
from promptdeck.engine.metric_series import (
    CounterSeries,
    HistogramSeries,
    SeriesMaker,
)

if TYPE_CHECKING:
    from promptdeck.engine.invoke import InvokeRequest

# Seconds: a cached answer or a refusal (milliseconds) to a long reasoning call (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TOKEN_KINDS = ("input", "cached_input", "cache_write_input", "output", "reasoning")
# Error codes of a refusal by promptdeck's own limits (rate limits now; budgets when they exist).
REFUSALS = frozenset({"too_many_requests", "budget_exceeded"})
CIRCUIT_OPEN = "circuit_open"  # an attempt the breaker refused: no upstream call to time
ERROR_CODES = 64  # distinct error codes as labels; more fold into (other)

# A label set's children are found by (series, its further labels): constant keys, no tuple built.
DURATION, TTFT, COST, CACHE_HITS, SAVED, RETRIES, FALLBACKS = (
    ("duration",),
    ("ttft",),
    ("cost",),
    ("cache_hits",),
    ("saved",),
    ("retries",),
    ("fallbacks",),
)
INPUT, CACHED, CACHE_WRITE, OUTPUT, REASONING = (("tokens", kind) for kind in TOKEN_KINDS)


class LabelSet:
    """One label set's children of the run series, made as first updated (a series shows only
    the label sets it has counted, as prometheus-client's)."""

    __slots__ = ("children", "labels")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.children: dict[tuple[str, ...], Any] = {}


class RunMetrics:
    """The run series, made by `make`; `run_ended` is the engine's observer hook."""

    def __init__(self, make: SeriesMaker, label_sets: int) -> None:
        self.labels = BoundedLabels(label_sets)
        self._codes = BoundedLabels(ERROR_CODES, kept=0)

        def counter(name: str, doc: str, *extra: str) -> CounterSeries:
            return make.counter(name, doc, (*LABELS, *extra))

        def histogram(name: str, doc: str, *extra: str) -> HistogramSeries:
            return make.histogram(name, doc, LATENCY_BUCKETS, (*LABELS, *extra))

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
        self._series: dict[str, CounterSeries | HistogramSeries] = {
            "runs": self.runs,
            "duration": self.duration,
            "ttft": self.ttft,
            "attempts": self.attempts,
            "tokens": self.tokens,
            "cost": self.cost,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "cache_hits": self.cache_hits,
            "saved": self.saved,
            "refusals": self.refusals,
        }
        self._label_sets: dict[tuple[str, ...], LabelSet] = {}  # bounded like the label sets

    def run_ended(self, record: RunRecord, request: InvokeRequest) -> None:
        mine = self._label_set(run_labels(record))
        found = mine.children.get
        code = self._codes.bounded((record.error_code,))[0] if record.error_code else ""
        ending = ("runs", record.status, code)
        (found(ending) or self._child(mine, ending)).inc()
        (found(DURATION) or self._child(mine, DURATION)).observe(record.duration_ms / 1000)
        if record.ttft_ms is not None:
            (found(TTFT) or self._child(mine, TTFT)).observe(record.ttft_ms / 1000)
        # Each kind on its own line: a loop over the five costs more than the updates.
        if record.input_tokens:
            (found(INPUT) or self._child(mine, INPUT)).inc(record.input_tokens)
        if record.cached_input_tokens:
            (found(CACHED) or self._child(mine, CACHED)).inc(record.cached_input_tokens)
        if record.cache_write_input_tokens:
            (found(CACHE_WRITE) or self._child(mine, CACHE_WRITE)).inc(record.cache_write_input_tokens)
        if record.output_tokens:
            (found(OUTPUT) or self._child(mine, OUTPUT)).inc(record.output_tokens)
        if record.reasoning_tokens:
            (found(REASONING) or self._child(mine, REASONING)).inc(record.reasoning_tokens)
        if record.cost:
            (found(COST) or self._child(mine, COST)).inc(record.cost)
        if record.cache_hit:
            (found(CACHE_HITS) or self._child(mine, CACHE_HITS)).inc()
            if record.saved_cost:
                (found(SAVED) or self._child(mine, SAVED)).inc(record.saved_cost)
        if code in REFUSALS:
            self._child(mine, ("refusals", code)).inc()
        if record.attempts:
            self._attempts(mine, record.attempts)

    def _attempts(self, mine: LabelSet, attempts: list[dict[str, Any]]) -> None:
        retries = 0
        fallbacks: set[int] = set()
        labels = mine.labels
        for attempt in attempts:
            get = attempt.get
            if get("attempt", 1) > 1:
                retries += 1
            if fallback := get("fallback"):
                fallbacks.add(fallback)
            if get("error_code") == CIRCUIT_OPEN:
                continue
            provider, model = str(get("provider", "")), str(get("model", ""))
            if provider == labels[2] and model == labels[3]:  # the run's own: already bounded
                own = mine
            else:
                own = self._label_set((labels[0], labels[1], provider, model, labels[4]))
            outcome = ("attempts", get("status", ""))
            timer = own.children.get(outcome) or self._child(own, outcome)
            timer.observe(get("duration_ms", 0.0) / 1000)
        if retries:
            self._child(mine, RETRIES).inc(retries)
        if fallbacks:
            self._child(mine, FALLBACKS).inc(len(fallbacks))

    def _label_set(self, labels: tuple[str, ...]) -> LabelSet:
        """The label set's children after the cap: a set under it is found at once; one past it
        is folded (by `BoundedLabels`, every time, so that the folds are counted)."""
        mine = self._label_sets.get(labels)
        if mine is None:
            bounded = self.labels.bounded(labels)
            mine = self._label_sets.get(bounded)
            if mine is None:
                mine = self._label_sets[bounded] = LabelSet(bounded)
        return mine

    def _child(self, mine: LabelSet, key: tuple[str, ...]) -> Any:
        """The label set's child of the series `key` names (with its further labels)."""
        child = mine.children.get(key)
        if child is None:
            series = self._series[key[0]]
            child = mine.children[key] = series.child((*mine.labels, *key[1:]))
        return child
