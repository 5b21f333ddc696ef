"""The OTLP/HTTP exporter against a real receiver on loopback: the endpoint, headers and
compression the standard variables name, retries of a busy collector, no retry of a refusal,
and the batch processor's variables (a full batch leaves at once, a full queue drops)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from promptdeck.domain.runs import RunRecord
from promptdeck.engine import otlp_http
from promptdeck.engine.otlp_http import OtlpHttpExporter, endpoint, headers
from promptdeck.engine.run_traces import RunTraces

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Collector:
    """An aiohttp OTLP receiver that answers each POST with the next status in `answers`."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    posts: list[tuple[str, dict[str, str], ExportTraceServiceRequest | None]] = field(default_factory=list)

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp undoes a Content-Encoding (gzip) itself
        status = self.answers.pop(0) if self.answers else 200
        decoded = ExportTraceServiceRequest.FromString(body) if status == 200 else None
        self.posts.append((request.path, dict(request.headers), decoded))
        return web.Response(status=status, body=b"", content_type="application/x-protobuf")

    def spans(self) -> int:
        return sum(
            len(s.spans)
            for _, _, r in self.posts
            if r is not None
            for rs in r.resource_spans
            for s in rs.scope_spans
        )


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    found = Collector()
    app = web.Application()
    app.router.add_post("/{path:.*}", found.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield found
    await runner.cleanup()


def a_run() -> RunRecord:
    return RunRecord(
        workspace_id="w", dialect="openai", deployment="fast", streamed=False, created_at=datetime.now(UTC)
    )


def test_the_endpoint_and_headers_variables() -> None:
    assert endpoint({}) == "http://localhost:4318/v1/traces"
    assert endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    assert (
        endpoint(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x",
            }
        )
        == "http://t/x"
    )
    assert headers("authorization=Bearer%20abc%3D, x-team = eu ,broken,=x") == {
        "authorization": "Bearer abc=",
        "x-team": "eu",
    }


async def test_headers_and_gzip_reach_the_collector(collector: Collector) -> None:
    exporter = OtlpHttpExporter(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url + "/custom/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20general,x-both=general",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=t%2C1",  # the traces variable wins
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )
    traces = RunTraces(exporter, environ={"OTEL_SERVICE_NAME": "svc"})
    record = a_run()
    traces.run_ended(record, SimpleNamespace(traceparent=None, params=None))  # type: ignore[arg-type]
    assert await traces.flush()
    await traces.shutdown()

    ((path, sent, request),) = collector.posts
    assert path == "/custom/traces"
    assert sent["x-tenant"] == "t,1" and "x-both" not in sent and "authorization" not in sent
    assert sent["Content-Encoding"] == "gzip" and sent["Content-Type"] == "application/x-protobuf"
    assert request is not None
    (span,) = request.resource_spans[0].scope_spans[0].spans
    assert span.trace_id.hex() == record.trace_id


async def test_a_busy_collector_is_retried_and_a_refusal_is_not(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(otlp_http, "BACKOFF_SECONDS", 0.01)
    exporter = OtlpHttpExporter({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    collector.answers = [503, 429]
    assert await exporter.send(ExportTraceServiceRequest().SerializeToString())
    assert [path for path, _, _ in collector.posts] == ["/v1/traces"] * 3

    collector.answers = [503, 503, 503, 400, 400]
    with caplog.at_level(logging.WARNING, logger="promptdeck.traces"):
        assert not await exporter.send(b"")  # three tries
        assert not await exporter.send(b"")  # a 400 is not tried again
    assert len(collector.posts) == 3 + 3 + 1
    assert len(caplog.records) == 1 and "HTTP 503" in caplog.records[0].getMessage()  # once a minute
    await exporter.close()


async def test_a_full_batch_leaves_at_once_and_a_full_queue_drops(collector: Collector) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3",
        "OTEL_BSP_MAX_QUEUE_SIZE": "4",
    }
    traces = RunTraces(OtlpHttpExporter(environ), environ=environ)
    request = SimpleNamespace(traceparent=TRACEPARENT, params=None)
    for _ in range(3):
        traces.run_ended(a_run(), request)  # type: ignore[arg-type]
    for _ in range(100):  # three spans wait: exported long before the delay
        if collector.spans() == 3:
            break
        await asyncio.sleep(0.02)
    assert collector.spans() == 3

    records = [a_run() for _ in range(6)]
    for record in records:
        traces.run_ended(record, SimpleNamespace(traceparent=None, params=None))  # type: ignore[arg-type]
    await traces.shutdown()
    assert traces.dropped >= 2  # no more than four spans wait
    assert collector.spans() == 3 + 6 - traces.dropped
    named = [r for r in records if r.trace_id is not None]
    assert len(named) == 6 - traces.dropped  # a dropped run names no trace nobody can find
