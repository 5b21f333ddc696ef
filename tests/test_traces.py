"""OpenTelemetry traces of runs, through a live server and a scripted upstream: one span per run
with the GenAI attributes, a child span per upstream attempt, the caller's `traceparent` as the
parent, error status, prompt and completion only when asked for; the run's trace id in the API;
and the spans reaching a real OTLP/HTTP receiver on loopback, configured by OTEL_* variables.

The in-memory cases add `RunTraces` to the live server's engine as any observer is added, with a
sink that decodes each export request promptdeck encoded with the official `opentelemetry-proto`
classes and hands the spans, as the SDK's `ReadableSpan`s, to the SDK's `InMemorySpanExporter`:
what they check is what a collector would read."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from promptdeck.domain.trace_context import traceparent_trace_id
from promptdeck.engine.run_traces import RunTraces, tracing_wanted
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, push_prompt, run_of
from tests.support.otlp_receiver import OtlpReceiver

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ANSWER = Script().text
QUICK = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    return getattr(value, kind)


def _attributes(values: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(values)
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass
class DecodingSink:
    """A `TraceSink` that reads each request as a collector would and keeps its spans."""

    exporter: InMemorySpanExporter

    async def send(self, body: bytes, *, retry: bool = True) -> bool:
        spans: list[ReadableSpan] = []
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            resource = Resource(_attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version)
                for span in scope_spans.spans:
                    flags = TraceFlags(span.flags & 0xFF)
                    trace_id = int.from_bytes(span.trace_id, "big")
                    parent = None
                    if span.parent_span_id:
                        remote = bool(span.flags & 0x200)
                        parent = SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"), remote)
                    spans.append(
                        ReadableSpan(
                            span.name,
                            SpanContext(trace_id, int.from_bytes(span.span_id, "big"), False, flags),
                            parent,
                            resource,
                            _attributes(span.attributes),
                            kind={2: SpanKind.SERVER, 3: SpanKind.CLIENT}[span.kind],
                            status=Status(StatusCode(span.status.code), span.status.message or None),
                            start_time=span.start_time_unix_nano,
                            end_time=span.end_time_unix_nano,
                            instrumentation_scope=scope,
                        )
                    )
        self.exporter.export(spans)
        return True

    async def close(self) -> None:
        pass


@dataclass
class Traced:
    """A live server whose runs are traced into memory."""

    deck: Deck
    traces: RunTraces
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        assert self.traces.force_flush()
        return list(self.exporter.get_finished_spans())

    def of_run(self, run: dict[str, Any]) -> tuple[ReadableSpan, list[ReadableSpan]]:
        """The run's span and its children, the children in the order they started."""
        spans = self.spans()
        (root,) = [s for s in spans if s.attributes and s.attributes.get("promptdeck.run.id") == run["id"]]
        children = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
        return root, sorted(children, key=lambda s: s.start_time or 0)


@pytest.fixture
def traced(start_deck: StartDeck) -> Iterator[Any]:
    """`traced(content=False, **settings)`: a live server, its runs traced into memory."""
    made: list[RunTraces] = []

    def make(content: bool = False, **settings: Any) -> Traced:
        deck = start_deck(**settings)
        exporter = InMemorySpanExporter()
        traces = RunTraces(DecodingSink(exporter), content=content)
        deck.services.engine.observers.add(traces)
        made.append(traces)
        return Traced(deck, traces, exporter)

    yield make
    for traces in made:
        traces.shutdown_from_thread()


def chat(
    deck: Deck, deployment: str = "fast", headers: dict[str, str] | None = None, **body: Any
) -> dict[str, Any]:
    """An OpenAI-dialect call (`variables` fill the template); returns the logged run."""
    with deck.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": deployment, "messages": [], "variables": INPUTS} | body,
            headers=headers or {},
        )
    assert response.status_code == 200, response.text
    return run_of(deck, response.headers["x-request-id"])


def hive(deck: Deck, deployment: str = "fast", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Fetch Hive invoke with INPUTS; returns the logged run."""
    with deck.client() as client:
        response = client.post(
            "/v1/prompt/invoke", json={"deployment": deployment, "inputs": INPUTS}, headers=headers or {}
        )
    request_id = response.json().get("request_id")  # a refused call's answer names none: the newest run
    return run_of(deck, request_id) if request_id else deck.runs(limit=1)[0]


def configure(deck: Deck, deployment: str, config: dict[str, Any]) -> None:
    with deck.client() as client:
        response = client.put(f"/api/deployments/{deployment}/variants/default/config", json=config)
    assert response.status_code == 200, response.text


def nanos(run: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(run["created_at"]).timestamp() * 1e9)


# ── the run's span ───────────────────────────────────────────────────────────────


def test_a_run_is_one_span_with_genai_attributes_and_a_child_per_attempt(traced: Any) -> None:
    t = traced()
    run = chat(t.deck, temperature=0.3, max_tokens=50)

    root, children = t.of_run(run)
    assert root.name == "chat fast" and root.kind is SpanKind.SERVER
    assert root.parent is None  # no traceparent came: a trace of its own
    assert root.status.status_code is StatusCode.UNSET
    attributes = dict(root.attributes or {})
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "fast",
        "gen_ai.response.model": "fast",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.request.temperature": 0.3,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 4,
        "promptdeck.run.id": run["id"],
        "promptdeck.deployment": "fast",
        "promptdeck.variant": "default",
        "promptdeck.version": 1,
        "promptdeck.dialect": "openai",
        "promptdeck.streamed": False,
        "promptdeck.ttft_ms": pytest.approx(run["ttft_ms"]),
    } | ({"promptdeck.cost": run["cost"]} if run["cost"] is not None else {})
    assert "gen_ai.input.messages" not in attributes and "gen_ai.output.messages" not in attributes

    # The run's own times: from its creation, for its duration.
    assert root.start_time == pytest.approx(nanos(run), abs=1_000)
    assert (root.end_time or 0) - (root.start_time or 0) == pytest.approx(run["duration_ms"] * 1e6, abs=1_000)
    (attempt,) = children
    assert attempt.name == "chat fast" and attempt.kind is SpanKind.CLIENT
    assert attempt.context.trace_id == root.context.trace_id
    assert root.start_time <= (attempt.start_time or 0) < (attempt.end_time or 0) <= (root.end_time or 0)
    assert dict(attempt.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "fast",
        "promptdeck.attempt": 1,
    }
    assert root.resource.attributes["service.name"] == "promptdeck"
    # The run keeps the trace id of its span (and the API answers it).
    assert run["trace_id"] == f"{root.context.trace_id:032x}"


def test_a_traceparent_becomes_the_runs_parent(traced: Any) -> None:
    t = traced()
    run = hive(t.deck, headers={"traceparent": TRACEPARENT})

    root, _ = t.of_run(run)
    assert f"{root.context.trace_id:032x}" == TRACE_ID == run["trace_id"]
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT_ID and root.parent.is_remote
    assert dict(root.attributes or {})["promptdeck.dialect"] == "fetchhive"

    # A broken traceparent is ignored: the run starts a trace of its own.
    broken = hive(t.deck, headers={"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"})
    root, _ = t.of_run(broken)
    assert root.parent is None and broken["trace_id"] == f"{root.context.trace_id:032x}" != TRACE_ID


def test_retries_and_a_fallback_are_child_spans_in_time_order(upstream: FakeOpenAI, traced: Any) -> None:
    upstream.scripts["primary"] = Script(status=500)
    t = traced()
    push_prompt(t.deck.url, t.deck.admin_key, "d", "openai/primary")
    configure(t.deck, "d", {"retries": QUICK, "fallbacks": [{"model": "openai/second"}]})

    run = hive(t.deck, "d")
    assert run["status"] == "success" and run["output"] == ANSWER

    root, children = t.of_run(run)
    assert root.status.status_code is StatusCode.UNSET
    assert dict(root.attributes or {})["gen_ai.response.model"] == "second"
    assert [
        (
            c.name,
            (c.attributes or {})["promptdeck.attempt"],
            (c.attributes or {}).get("promptdeck.fallback", 0),
        )
        for c in children
    ] == [
        ("chat primary", 1, 0),
        ("chat primary", 2, 0),
        ("chat second", 1, 1),
    ]
    for failed in children[:2]:
        assert failed.status.status_code is StatusCode.ERROR
        assert (failed.attributes or {})["error.type"] == "upstream_error"
        assert "500" in (failed.status.description or "")
    assert children[2].status.status_code is StatusCode.UNSET and "error.type" not in (
        children[2].attributes or {}
    )
    # Laid out as they happened: one after another, all within the run (a backoff between retries).
    for before, after in itertools.pairwise(children):
        assert (before.end_time or 0) <= (after.start_time or 0)
    assert (root.start_time or 0) <= (children[0].start_time or 0)
    assert (children[-1].end_time or 0) <= (root.end_time or 0)


def test_a_failed_run_and_a_refused_one_have_error_status(upstream: FakeOpenAI, traced: Any) -> None:
    upstream.scripts["broken"] = Script(status=500)
    t = traced()
    push_prompt(t.deck.url, t.deck.admin_key, "d", "openai/broken")
    configure(t.deck, "d", {"retries": QUICK | {"max_attempts": 2}})

    run = hive(t.deck, "d")
    assert run["status"] == "error"
    root, children = t.of_run(run)
    assert root.status.status_code is StatusCode.ERROR and root.status.description == run["error_message"]
    assert dict(root.attributes or {})["error.type"] == run["error_code"] == "upstream_error"
    assert "gen_ai.response.model" not in dict(root.attributes or {})
    assert [c.status.status_code for c in children] == [StatusCode.ERROR] * 2

    refused = hive(t.deck, "no-such-deployment")
    root, children = t.of_run(refused)
    assert root.name == "chat no-such-deployment" and children == []
    assert root.status.status_code is StatusCode.ERROR
    assert dict(root.attributes or {})["error.type"] == refused["error_code"] == "not_found"


# ── prompt and completion text ──────────────────────────────────────────────────


def test_prompt_and_completion_are_exported_only_when_asked(traced: Any) -> None:
    plain = traced()
    root, _ = plain.of_run(hive(plain.deck))
    assert not any(name.startswith(("gen_ai.input", "gen_ai.output")) for name in root.attributes or {})

    t = traced(content=True)
    root, children = t.of_run(hive(t.deck))
    attributes = dict(root.attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "You summarize text in one sentence."}]},
        {"role": "user", "parts": [{"type": "text", "content": f"Summarize for kids: {INPUTS['text']}"}]},
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}
    ]
    assert not any(
        name.startswith(("gen_ai.input", "gen_ai.output")) for c in children for name in c.attributes or {}
    )


def test_the_content_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptdeck.config import Settings

    assert Settings().trace_content is False
    monkeypatch.setenv("PROMPTDECK_TRACE_CONTENT", "true")
    assert Settings().trace_content is True


# ── the trace id without tracing ──────────────────────────────────────────────────


def test_the_trace_id_of_a_traceparent_is_kept_with_tracing_off(start_deck: StartDeck) -> None:
    deck = start_deck()
    assert deck.services.traces is None  # no OTEL_* variable asks for traces

    run = hive(deck, headers={"traceparent": TRACEPARENT})
    assert run["trace_id"] == TRACE_ID
    with deck.client() as client:  # in the list of runs as well as the run's own answer
        listed = client.get("/api/runs", params={"limit": 1}).json()["data"][0]
    assert listed["id"] == run["id"] and listed["trace_id"] == TRACE_ID
    assert hive(deck)["trace_id"] is None
    assert hive(deck, headers={"traceparent": "not a trace"})["trace_id"] is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT, TRACE_ID),
        (f"  {TRACEPARENT} ", TRACE_ID),
        (f"01-{TRACE_ID}-{PARENT_ID}-00-and-more", TRACE_ID),  # a later version may add fields
        (f"00-{TRACE_ID}-{PARENT_ID}-01-extra", None),  # version 00 may not
        (f"ff-{TRACE_ID}-{PARENT_ID}-01", None),
        (f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", None),
        (f"00-{'0' * 32}-{PARENT_ID}-01", None),
        (f"00-{TRACE_ID}-{'0' * 16}-01", None),
        (f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent_trace_ids_follow_the_propagator(value: str | None, expected: str | None) -> None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    assert traceparent_trace_id(value) == expected
    if value is not None:  # the same answer as the SDK's own W3C propagator
        context = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": value}))
        found = context.get_span_context()
        assert (f"{found.trace_id:032x}" if found.is_valid else None) == expected


# ── turning it on ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, False),
    ],
)
def test_tracing_is_turned_on_by_the_standard_variables(environ: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(environ) is wanted


WITHOUT_OPENTELEMETRY = """
import asyncio, sys
from datetime import UTC, datetime
from types import SimpleNamespace

ABSENT = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "google.protobuf")

class NoOpenTelemetrySdk:  # as if the SDK, its exporters and protobuf were not installed
    def find_spec(self, name, path=None, target=None):
        if name.startswith(ABSENT):
            raise ModuleNotFoundError(name)

sys.meta_path.insert(0, NoOpenTelemetrySdk())
from promptdeck.app import create_app  # the whole server imports without it
from promptdeck.domain.runs import RunRecord
from promptdeck.engine.run_traces import RunTraces

async def main():
    traces = RunTraces.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": sys.argv[1]})
    record = RunRecord(workspace_id="w", dialect="openai", deployment="fast", streamed=False,
                       created_at=datetime.now(UTC), duration_ms=12.5)
    traces.run_ended(record, SimpleNamespace(traceparent=None, params=None))
    await traces.shutdown()
    print(record.trace_id, any(name.startswith(ABSENT) for name in sys.modules))

asyncio.run(main())
"""


def test_traces_need_no_opentelemetry_sdk(receiver: OtlpReceiver) -> None:
    """The spans are promptdeck's own, encoded by hand: the server exports them without the
    OpenTelemetry SDK, its exporters or protobuf (in a process where none can be imported; the
    OpenTelemetry API is FastAPI's own dependency)."""
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY, receiver.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    trace_id, imported = done.stdout.split()
    assert imported == "False" and "WARNING" not in done.stderr.upper()
    (span,) = receiver.wait_for(lambda spans: len(spans) >= 1)
    assert span.trace_id == trace_id and span.name == "chat fast"
    assert span.end_ns - span.start_ns == 12_500_000


# ── a real OTLP receiver ──────────────────────────────────────────────────────────


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def test_spans_reach_an_otlp_receiver_set_by_the_environment(
    receiver: OtlpReceiver, start_deck: StartDeck, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "deck-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # milliseconds between batches
    deck = start_deck()
    assert deck.services.traces is not None

    run = chat(deck)
    spans = receiver.wait_for(lambda spans: len(spans) >= 2)
    assert receiver.posts and set(receiver.posts) == {"/v1/traces"}
    assert {s.trace_id for s in spans} == {run["trace_id"]}
    (root,) = [s for s in spans if s.attributes.get("promptdeck.run.id") == run["id"]]
    (child,) = [s for s in spans if s.parent_span_id == root.span_id]
    assert (root.name, child.name) == ("chat fast", "chat fast")
    assert (
        root.attributes["gen_ai.usage.output_tokens"] == 4
        and root.attributes["gen_ai.operation.name"] == "chat"
    )
    assert root.resource["service.name"] == "deck-under-test"
    assert root.start_ns == pytest.approx(nanos(run), abs=1_000)


def test_spans_of_a_caller_trace_are_flushed_when_the_server_stops(
    receiver: OtlpReceiver, start_deck: StartDeck, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/v1/traces")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # no batch leaves before the stop
    deck = start_deck()

    runs = [hive(deck, headers={"traceparent": TRACEPARENT}) for _ in range(3)]
    time.sleep(0.2)
    assert receiver.spans == []
    deck.live.stop()

    spans = receiver.wait_for(lambda spans: len(spans) >= 6, timeout=5)
    assert len(spans) == 6 and {s.trace_id for s in spans} == {TRACE_ID}
    roots = [s for s in spans if s.parent_span_id == PARENT_ID]
    assert sorted(s.attributes["promptdeck.run.id"] for s in roots) == sorted(r["id"] for r in runs)
    assert all(r["trace_id"] == TRACE_ID for r in runs)


def test_an_unreachable_receiver_never_holds_up_a_run(
    start_deck: StartDeck, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", fake_openai.refused_url().removesuffix("/v1"))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    deck = start_deck()
    started = time.monotonic()
    for _ in range(5):
        assert hive(deck)["status"] == "success"
    assert time.monotonic() - started < 5
    with httpx.Client(base_url=deck.url) as client:
        assert client.get("/api/health").status_code == 200


def test_a_sampled_out_run_exports_nothing_and_keeps_only_a_callers_trace_id(
    traced: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # read by the SDK as the traces start
    t = traced()
    assert hive(t.deck)["trace_id"] is None  # a trace nobody can find is not named
    assert hive(t.deck, headers={"traceparent": TRACEPARENT})["trace_id"] == TRACE_ID
    assert t.spans() == []


def test_a_parent_based_ratio_follows_the_callers_decision(
    traced: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")  # no trace of its own is sampled
    t = traced()
    assert hive(t.deck)["trace_id"] is None
    unsampled = hive(t.deck, headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert unsampled["trace_id"] == TRACE_ID  # joined, though not exported
    sampled = hive(t.deck, headers={"traceparent": TRACEPARENT})
    (root,) = [s for s in t.spans() if s.parent is not None and s.parent.is_remote]
    assert dict(root.attributes or {})["promptdeck.run.id"] == sampled["id"]
    assert root.context.trace_flags.sampled and f"{root.context.trace_id:032x}" == TRACE_ID
    assert len(t.spans()) == 2  # the run and its attempt, nothing of the other two
