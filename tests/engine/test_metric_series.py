"""The plain series of one process scrape exactly as prometheus-client's own `Counter` and
`Histogram` (which several workers use) would, for the same updates: names, HELP, TYPE, labels,
every `_total`/`_bucket`/`_count`/`_sum`/`_created` sample and their order. Compared as the
scrape's text, `_created` times aside (checked to be the moment a label set was first counted).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from promptdeck.domain.runs import RunRecord
from promptdeck.engine.metric_series import PlainCounter, PlainHistogram, SeriesMaker
from promptdeck.engine.metrics_registry import Metrics
from promptdeck.engine.run_metrics import LATENCY_BUCKETS, RunMetrics
from promptdeck.surfaces.request_metrics import RequestMetrics

CREATED = re.compile(r"^(\w+_created(?:\{.*\})?) (\S+)$", re.MULTILINE)


def scrape(registry: CollectorRegistry, since: float) -> str:
    """The registry's text, each `_created` value checked, then replaced by 0."""
    text = generate_latest(registry).decode()
    for created in CREATED.findall(text):
        assert since <= float(created[1]) <= time.time(), created
    return CREATED.sub(r"\1 0", text)  # the mark parses as a value


def both(label_sets: int = 100) -> Iterator[tuple[RunMetrics, CollectorRegistry]]:
    for shared in (False, True):
        registry = CollectorRegistry()
        yield RunMetrics(SeriesMaker(registry, shared), label_sets), registry


labels = st.sampled_from([("a", "x"), ("b", "x"), ("a", "y:z"), ('q"uote', "")])
updates = st.lists(
    st.tuples(
        labels,
        st.one_of(
            st.floats(min_value=-5, max_value=1e4, allow_nan=False),
            st.sampled_from([0.0, *LATENCY_BUCKETS, float("inf")]),  # on a bound: in its bucket
        ),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(updates)
def test_plain_series_scrape_as_prometheus_clients(changes: list[tuple[tuple[str, str], float]]) -> None:
    since = time.time()
    scraped = []
    for shared in (False, True):
        registry = CollectorRegistry()
        make = SeriesMaker(registry, shared)
        counter = make.counter("demo_things", "Things, by a and b.", ("a", "b"))
        histogram = make.histogram("demo_seconds", "How long.", LATENCY_BUCKETS, ("a", "b"))
        plain = make.counter("demo_plain", "Unlabelled: shown before any update.")
        timer = make.histogram("demo_plain_seconds", "Unlabelled too.", (0.1, 1.0))
        for pair, value in changes:
            counter.inc(pair, abs(value) if value != float("inf") else 1)
            histogram.observe(pair, value)
            timer.observe((), value)
            counter.child(pair).inc()  # a kept child is the same series
        plain.inc((), len(changes))
        scraped.append(scrape(registry, since))
    assert scraped[0] == scraped[1]


def test_plain_series_are_lock_free_and_collected_by_the_registry() -> None:
    registry = CollectorRegistry()
    make = SeriesMaker(registry, shared=False)
    counter, histogram = make.counter("demo", "d", ("a",)), make.histogram("demo_s", "d", (1.0,), ("a",))
    assert isinstance(counter, PlainCounter) and isinstance(histogram, PlainHistogram)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        make.counter("demo", "again")
    histogram.observe(("x",), 2.0)
    families: dict[str, Metric] = {family.name: family for family in registry.collect()}
    buckets = {s.labels["le"]: s.value for s in families["demo_s"].samples if s.name == "demo_s_bucket"}
    assert buckets == {"1.0": 0.0, "+Inf": 1.0}
    assert [s.name for s in families["demo"].samples] == []  # no label set counted yet


def test_created_samples_follow_prometheus_clients_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_DISABLE_CREATED_SERIES", "true")
    registry = CollectorRegistry()
    SeriesMaker(registry, shared=False).counter("demo", "d", ("a",)).inc(("x",))
    text = generate_latest(registry).decode()
    assert 'demo_total{a="x"} 1.0' in text and "_created" not in text


def record(**changes: object) -> RunRecord:
    """A successful run of deployment `fast` (one attempt), changed by `changes`."""
    run = RunRecord(
        workspace_id="w",
        dialect="fetchhive",
        deployment="fast",
        streamed=False,
        deployment_id="d1",
        variant="default",
        version_id="v1",
        model="openai/fast",
        provider="openai",
        input_tokens=11,
        cached_input_tokens=2,
        output_tokens=4,
        cost=0.00012,
        duration_ms=130.0,
        ttft_ms=80.0,
        attempts=[attempt()],
    )
    for name, value in changes.items():
        setattr(run, name, value)
    return run


def attempt(
    status: str = "success", number: int = 1, fallback: int = 0, code: str | None = None, **more: object
) -> dict[str, object]:
    return {
        "provider": "openai",
        "model": "openai/fast",
        "fallback": fallback,
        "attempt": number,
        "status": status,
        "error_code": code,
        "duration_ms": 120.0,
        "began_ms": 0.0,
    } | more


RUNS = [
    record(),
    record(dialect="openai", variant="beta"),
    record(
        status="error",
        error_code="upstream_error",
        ttft_ms=None,
        cost=None,
        attempts=[
            attempt("error", code="upstream_error"),
            attempt("error", 2, code="upstream_error", duration_ms=3.0),
            attempt("error", 1, 1, "circuit_open", model="openai/slow"),
        ],
    ),
    record(deployment="typo", deployment_id=None, status="error", error_code="not_found", attempts=None),
    record(cache_hit=True, saved_cost=0.001, cost=0.0, attempts=None),
    record(status="error", error_code="too_many_requests", attempts=None, ttft_ms=None),
    record(reasoning_tokens=7, cache_write_input_tokens=3, duration_ms=200_000.0),
    record(
        status="error",
        error_code="upstream_error",
        attempts=[attempt("error", code="x"), attempt("success", 1, 1, model="openai/slow", duration_ms=50)],
    ),
    record(provider="anthropic", model="claude", attempts=[attempt(provider="anthropic", model="claude")]),
    *(record(error_code=f"code_{n}", status="error") for n in range(70)),  # past the 64 codes
]


@pytest.mark.parametrize("label_sets", [100, 2])
def test_run_series_scrape_the_same_either_way(label_sets: int) -> None:
    """The run series of one process and those of several workers (prometheus-client's), fed
    the same runs, with and without label sets folded into (other)."""
    since = time.time()
    scraped = []
    for runs, registry in both(label_sets):
        for run in RUNS + RUNS:
            runs.run_ended(run, None)  # type: ignore[arg-type]  # the request is not read
        scraped.append(scrape(registry, since))
    assert scraped[0] == scraped[1]
    assert 'error_code="(other)"' in scraped[0]
    if label_sets == 2:
        assert 'promptdeck_runs_total{deployment="(other)"' in scraped[0]
        return
    found = samples(scraped[0])
    fast = {"deployment": "fast", "variant": "default", "provider": "openai", "dialect": "fetchhive"}
    assert (
        found["promptdeck_runs_total", labelled(fast, model="openai/fast", status="success", error_code="")]
        == 6  # three a pass: plain, cache hit, reasoning
    )
    assert (
        found[
            "promptdeck_runs_total",
            labelled(fast, model="openai/fast", status="error", error_code="too_many_requests"),
        ]
        == 2
    )
    assert (
        found["promptdeck_refusals_total", labelled(fast, model="openai/fast", code="too_many_requests")] == 2
    )
    unknown = {"deployment": "(unknown)", "variant": "", "provider": "openai", "model": "openai/fast"}
    assert (
        found[
            "promptdeck_runs_total",
            labelled(unknown, dialect="fetchhive", status="error", error_code="not_found"),
        ]
        == 2
    )
    # An attempt is labelled with its own model; the one the breaker refused is not timed.
    attempts = "promptdeck_upstream_attempt_duration_seconds_count"
    assert found[attempts, labelled(fast, model="openai/slow", outcome="success")] == 2
    assert found[attempts, labelled(fast, model="openai/fast", outcome="error")] == 6
    assert (attempts, labelled(fast, model="openai/slow", outcome="error")) not in found
    mine = fast | {"model": "openai/fast"}
    counted = labelled(mine)
    assert (
        found["promptdeck_retries_total", counted] == 2 and found["promptdeck_fallbacks_total", counted] == 4
    )
    assert found["promptdeck_tokens_total", labelled(mine, kind="reasoning")] == 14
    assert found["promptdeck_cache_hits_total", counted] == 2
    assert found["promptdeck_cache_saved_cost_usd_total", counted] == pytest.approx(0.002)
    assert (
        found["promptdeck_run_duration_seconds_bucket", labelled(mine, le="120.0")]
        < found["promptdeck_run_duration_seconds_bucket", labelled(mine, le="+Inf")]
    )


def labelled(labels: dict[str, str], **more: str) -> frozenset[tuple[str, str]]:
    return frozenset((labels | more).items())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A scrape's samples by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Route:
    """What Starlette's routing puts in the scope: the matched route, by its template."""

    def __init__(self, path: str) -> None:
        self.path = path


async def no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """`note` is called directly here (as the access log calls it): the app is never reached."""
    raise AssertionError("not called")


def test_request_series_scrape_the_same_either_way() -> None:
    since = time.time()
    requests: list[tuple[Scope, int, float]] = [
        ({"method": "POST", "path": "/v1/prompt/invoke"}, 200, 0.004),
        ({"method": "POST", "path": "/v1/prompt/invoke"}, 200, 0.05),
        ({"method": "POST", "path": "/v1/prompt/invoke"}, 404, 0.0004),
        ({"method": "GET", "path": "/api/runs/r1", "route": Route("/api/runs/{run_id}")}, 200, 0.02),
        ({"method": "GET", "path": "/api/runs/r2", "route": Route("/api/runs/{run_id}")}, 200, 0.3),
        ({"method": "GET", "path": "/no/such/path"}, 404, 0.001),
        ({"method": "GET", "path": "/", "route": Route("")}, 200, 7.0),
    ]
    scraped = []
    for shared in (False, True):
        metrics = Metrics(10, shared=shared)
        counted = RequestMetrics(no_app, metrics, ["/v1/prompt/invoke"])
        for scope, status, seconds in requests:
            counted.note(scope, status, seconds)
        metrics.batch_written(3, 0.002)
        text = scrape(metrics.registry, since)
        scraped.append([line for line in text.splitlines() if "promptdeck_" in line])
    assert scraped[0] == scraped[1]
    assert any('route="/api/runs/{run_id}"' in line for line in scraped[0])
    assert any('route="(unmatched)"' in line for line in scraped[0])
