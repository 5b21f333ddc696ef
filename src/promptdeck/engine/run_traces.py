"""Each run as an OpenTelemetry span, exported over OTLP/HTTP (docs/operations.md, "Traces").

Opt in through the standard OTEL_* variables; nothing needs installing. A run's span is made
from the run as it ends (`RunObserver.run_ended`), with the run's own start time and duration,
so nothing is held open across a request and no context travels through the pipeline: the span
joins the caller's `traceparent`, and each upstream attempt becomes a child span at its own
offset (`began_ms` in the run's attempts).

The event loop only decides whether the run is sampled, names its trace and queues the run
(bounded, as the SDK's batch processor is: `OTEL_BSP_*`). A task on the same loop turns the
queued runs into spans every `OTEL_BSP_SCHEDULE_DELAY` ms, or as soon as a batch is full,
encodes them (`otlp_protobuf`, by hand: the SDK's span and message objects cost several times
as much, bench/README.md "With traces on") and posts them (`otlp_http`). No thread: a thread
encoding in Python would take the GIL from the loop anyway.

Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`), plus promptdeck's
own (`promptdeck.*`). Prompt and completion text are left out unless `PROMPTDECK_TRACE_CONTENT`
says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from random import getrandbits
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from promptdeck import __version__
from promptdeck.domain.runs import ERROR, RunRecord
from promptdeck.domain.trace_context import CallerSpan, caller_span
from promptdeck.engine.otlp_http import OtlpHttpExporter
from promptdeck.engine.otlp_protobuf import (
    FLAG_HAS_IS_REMOTE,
    FLAG_IS_REMOTE,
    FLAG_SAMPLED,
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    SpanData,
    TraceRequestEncoder,
    encode_span,
)
from promptdeck.engine.trace_sampler import sampler_from_environment

if TYPE_CHECKING:
    from promptdeck.engine.invoke import InvokeRequest

log = logging.getLogger("promptdeck.traces")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SERVICE_NAME = "promptdeck"
OTLP_HTTP = "http/protobuf"
# The batch processor's variables and the SDK's defaults for them.
BATCH_SETTINGS = {
    "OTEL_BSP_SCHEDULE_DELAY": 5000,  # ms between exports
    "OTEL_BSP_MAX_QUEUE_SIZE": 2048,  # spans waiting; more are dropped
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,  # spans in one export
}
DROP_LOG_EVERY_SECONDS = 60.0
RUNS_BETWEEN_YIELDS = 64  # runs encoded (1-2 ms of CPU) before the export task lets requests in
# promptdeck's provider names as the GenAI conventions' well-known `gen_ai.provider.name` values;
# a named upstream keeps its own name.
GENAI_PROVIDERS = {
    "openai": "openai",
    "openai-responses": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "azure": "azure.ai.openai",
}
# A caller's sampling parameters, by the attribute each is reported as.
REQUEST_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
}

# A queued run: the record, the call's parameters, its trace id and the caller's span (or None).
QueuedRun = tuple[RunRecord, Mapping[str, Any] | None, int, CallerSpan | None]


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces: `OTEL_TRACES_EXPORTER=otlp`, or an OTLP
    endpoint with no exporter named, and the SDK not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    named = {name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    if named:
        if named - {"otlp", "none"}:
            log.warning(
                "OTEL_TRACES_EXPORTER=%s: promptdeck exports traces over OTLP only (otlp or none)",
                environ["OTEL_TRACES_EXPORTER"],
            )
        return "otlp" in named
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


class TraceSink(Protocol):
    """Where encoded `ExportTraceServiceRequest`s go: OTLP/HTTP, or a test's decoder."""

    async def send(self, body: bytes, *, retry: bool = True) -> bool: ...

    async def close(self) -> None: ...


class RunTraces:
    """The run observer that queues each sampled run and exports its spans in batches. Made
    with the sink its requests go to: OTLP/HTTP from the environment (`from_environment`), or
    any other (a test's)."""

    def __init__(
        self,
        sink: TraceSink,
        *,
        content: bool = False,
        service_name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.sink = sink
        self.content = content
        self._sample = sampler_from_environment(environ)
        delay, self.max_queue, self.batch_size = (
            _positive(environ, name, default) for name, default in BATCH_SETTINGS.items()
        )
        self.delay = delay / 1000
        self.batch_size = min(self.batch_size, self.max_queue)
        self.encoder = TraceRequestEncoder(resource(environ, service_name), "promptdeck", __version__)
        self.dropped = 0  # spans not exported because the queue was full
        self._queue: deque[QueuedRun] = deque()
        self._queued = 0  # spans in the queue
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()  # one export at a time: the task's, a flush's
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._drop_logged_at = -DROP_LOG_EVERY_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], *, content: bool = False) -> RunTraces | None:
        """Traces exported as the OTEL_* variables say, or None when they ask for none."""
        if not tracing_wanted(environ):
            return None
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        if protocol and protocol.strip().lower() != OTLP_HTTP:
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=%s: promptdeck exports traces over %s", protocol, OTLP_HTTP
            )
        return cls(OtlpHttpExporter(environ), content=content, environ=environ)

    def run_ended(self, record: RunRecord, request: InvokeRequest) -> None:
        """Queue a sampled run for export and name its trace on the run; on the event loop, so
        no more than that: its spans are made in the export task."""
        if self._closed:
            return
        caller = caller_span(request.traceparent) if request.traceparent else None
        if caller is None:
            trace_id = getrandbits(128) or 1
            if not self._sample(trace_id, None):
                return  # sampled out: a trace nobody can find is not named
        else:
            trace_id = int(caller.trace_id, 16)
            if not self._sample(trace_id, caller.flags):
                return
        spans = 1 + len(record.attempts or ())
        if self._queued + spans > self.max_queue:
            self._drop(spans)
            return
        self._queue.append((record, request.params, trace_id, caller))
        self._queued += spans
        record.trace_id = caller.trace_id if caller is not None else f"{trace_id:032x}"
        if self._task is None:
            self._start()
        if self._queued >= self.batch_size:
            self._full.set()

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._export_every_delay(), name="promptdeck-traces")

    def _drop(self, spans: int) -> None:
        self.dropped += spans
        now = time.monotonic()
        if now - self._drop_logged_at >= DROP_LOG_EVERY_SECONDS:
            self._drop_logged_at = now
            log.warning(
                "the span queue is full (OTEL_BSP_MAX_QUEUE_SIZE=%d): spans are dropped (%d so far)",
                self.max_queue,
                self.dropped,
            )

    async def _export_every_delay(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay):
                    await self._full.wait()
            try:
                await self.flush()
            except Exception:  # a bug must not end the exports for good
                log.exception("could not export spans")

    async def flush(self, *, retry: bool = True) -> bool:
        """Export every queued run now, in batches; False if a batch did not go."""
        async with self._lock:
            self._full.clear()
            sent = True
            while self._queue:
                batch: list[bytes] = []
                runs = 0
                while self._queue and len(batch) < self.batch_size:
                    queued = self._queue.popleft()
                    self._queued -= 1 + len(queued[0].attempts or ())  # as `run_ended` counted
                    batch += [encode_span(span) for span in run_spans(*queued, self.content)]
                    runs += 1
                    if runs % RUNS_BETWEEN_YIELDS == 0:
                        await asyncio.sleep(0)  # a big batch does not hold up the requests
                sent = await self.sink.send(self.encoder.encode_spans(batch), retry=retry) and sent
            return sent

    def force_flush(self, timeout_ms: int = 30_000) -> bool:
        """`flush` from another thread (a test's), waiting for it; True when nothing is left."""
        if self._loop is None:
            return True  # no run was ever queued
        done = asyncio.run_coroutine_threadsafe(self.flush(), self._loop)
        return done.result(timeout_ms / 1000)

    async def shutdown(self) -> None:
        """Stop the export task and export what is left (one try each), when the server stops."""
        self._closed = True
        async with self._lock:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.flush(retry=False)
        await self.sink.close()

    def shutdown_from_thread(self, timeout_s: float = 30.0) -> None:
        """`shutdown` from another thread, when the loop that exports is still running."""
        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.shutdown(), self._loop).result(timeout_s)


def resource(environ: Mapping[str, str], service_name: str | None = None) -> dict[str, Any]:
    """The resource's attributes, as the SDK makes them: `OTEL_RESOURCE_ATTRIBUTES`
    (URL-decoded), the service (the name given, else `OTEL_SERVICE_NAME`, else the resource's,
    else promptdeck) and promptdeck as the telemetry SDK."""
    attributes: dict[str, Any] = {}
    for entry in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        name, equals, value = entry.partition("=")
        if equals and name.strip():
            attributes[name.strip()] = unquote(value.strip())
    service = service_name or environ.get("OTEL_SERVICE_NAME", "").strip()
    attributes["service.name"] = service or attributes.get("service.name") or SERVICE_NAME
    attributes["service.version"] = __version__
    attributes |= {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "promptdeck",
        "telemetry.sdk.version": __version__,
    }
    return attributes


def run_spans(
    record: RunRecord,
    params: Mapping[str, Any] | None,
    trace_id: int,
    caller: CallerSpan | None,
    content: bool = False,
) -> list[SpanData]:
    """The run's span and one child span per upstream attempt, at the run's own times."""
    trace = trace_id.to_bytes(16, "big")
    own = (getrandbits(64) or 1).to_bytes(8, "big")
    attributes = run_attributes(record, params)
    if content:
        add_content(attributes, record)
    since = record.created_at - _EPOCH  # not `.timestamp()`, which asks the OS for the zone
    start = (since.days * 86_400 + since.seconds) * 1_000_000_000 + since.microseconds * 1000
    end = start + int(record.duration_ms * 1e6)
    failed = record.status == ERROR
    spans = [
        SpanData(
            trace,
            own,
            bytes.fromhex(caller.span_id) if caller is not None else b"",
            FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | (FLAG_IS_REMOTE if caller is not None else 0),
            f"chat {record.deployment}",
            KIND_SERVER,
            start,
            end,
            attributes,
            STATUS_ERROR if failed else 0,
            (record.error_message or "") if failed else "",
        )
    ]
    for attempt in record.attempts or ():
        began = start + int(float(attempt.get("began_ms") or 0.0) * 1e6)
        failed = attempt.get("status") == ERROR
        spans.append(
            SpanData(
                trace,
                (getrandbits(64) or 1).to_bytes(8, "big"),
                own,
                FLAG_SAMPLED | FLAG_HAS_IS_REMOTE,
                f"chat {_model_name(attempt.get('model'), attempt.get('provider'))}",
                KIND_CLIENT,
                began,
                min(end, began + int(float(attempt.get("duration_ms") or 0.0) * 1e6)),
                attempt_attributes(attempt),
                STATUS_ERROR if failed else 0,
                str(attempt.get("error") or "") if failed else "",
            )
        )
    return spans


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(environ.get(name, "").strip() or default)
    except ValueError:
        log.warning("%s=%s is not a whole number: using %d", name, environ[name], default)
        return default
    return value if value > 0 else default


def run_attributes(record: RunRecord, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run span's attributes: GenAI's, then promptdeck's own (None values are left out)."""
    attempts = record.attempts or []
    answered = next((a for a in reversed(attempts) if a.get("status") != ERROR), None)
    last = attempts[-1] if attempts else None
    provider = record.provider or (last or {}).get("provider")
    requested = (last or {}).get("model") or record.model
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": genai_provider(provider),
        "gen_ai.system": genai_provider(provider),
        "gen_ai.request.model": _model_name(requested, provider),
        "gen_ai.response.model": _model_name(record.model, provider) if answered else None,
        "gen_ai.response.finish_reasons": (record.stop_reason,) if record.stop_reason else None,
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": record.cached_input_tokens or None,
        "gen_ai.usage.cache_creation.input_tokens": record.cache_write_input_tokens or None,
        "error.type": (record.error_code or "error") if record.status == ERROR else None,
        "promptdeck.run.id": record.id,
        "promptdeck.deployment": record.deployment,
        "promptdeck.variant": record.variant,
        "promptdeck.version": record.version_number,
        "promptdeck.dialect": record.dialect,
        "promptdeck.streamed": record.streamed,
        "promptdeck.cost": record.cost,
        "promptdeck.usage.estimated": record.usage_estimated or None,
        "promptdeck.ttft_ms": record.ttft_ms,
        "promptdeck.session.id": record.session_id,
        "promptdeck.cache_hit": record.cache_hit,
        "promptdeck.saved_cost": record.saved_cost,
    }
    for name, value in (params or {}).items():
        if name in REQUEST_PARAMS and isinstance(value, int | float) and not isinstance(value, bool):
            attributes[REQUEST_PARAMS[name]] = value
    return {name: value for name, value in attributes.items() if value is not None}


def attempt_attributes(attempt: Mapping[str, Any]) -> dict[str, Any]:
    """One upstream attempt's span attributes: few, as every run has at least one attempt."""
    provider = attempt.get("provider")
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": genai_provider(provider),
        "gen_ai.request.model": _model_name(attempt.get("model"), provider),
        "error.type": (attempt.get("error_code") or "error") if attempt.get("status") == ERROR else None,
        "promptdeck.attempt": attempt.get("attempt"),
        "promptdeck.fallback": attempt.get("fallback") or None,  # 0, the variant's own model: left out
    }
    return {name: value for name, value in attributes.items() if value is not None}


def add_content(attributes: dict[str, Any], record: RunRecord) -> None:
    """The rendered prompt and the answer, as GenAI's `gen_ai.input.messages` and
    `gen_ai.output.messages` (JSON text, one part list per message)."""
    messages = [{"role": m.get("role"), "parts": _parts(m.get("content"))} for m in record.messages or []]
    attributes["gen_ai.input.messages"] = json.dumps(messages, ensure_ascii=False, default=str)
    parts: list[dict[str, Any]] = []
    if record.reasoning:
        parts.append({"type": "reasoning", "content": record.reasoning})
    if record.output:
        parts.append({"type": "text", "content": record.output})
    for call in record.tool_calls or []:
        parts.append({"type": "tool_call", **call})
    if parts:
        output = [{"role": "assistant", "parts": parts, "finish_reason": record.stop_reason}]
        attributes["gen_ai.output.messages"] = json.dumps(output, ensure_ascii=False, default=str)


def genai_provider(provider: str | None) -> str | None:
    return GENAI_PROVIDERS.get(provider, provider) if provider else None


def _parts(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    return list(content) if isinstance(content, list) else [content]


def _model_name(model: str | None, provider: str | None) -> str | None:
    """The model as its provider knows it: a configured `openai/gpt-4o` is `gpt-4o`."""
    if model and provider and model.startswith(provider + "/"):
        return model[len(provider) + 1 :]
    return model
