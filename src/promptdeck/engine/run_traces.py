"""Each run as an OpenTelemetry span, exported over OTLP/HTTP (docs/operations.md, "Traces").

Opt in through the standard OTEL_* variables; the SDK is the `otel` extra, imported only when
they ask for traces, so the default install and a server without tracing pay nothing. A run's
span is made as the run ends (`RunObserver.run_ended`), with the run's own start time and
duration, so nothing is held open across a request and no context travels through the
pipeline: the span joins the caller's `traceparent`, and each upstream attempt becomes a child
span at its own offset (`began_ms` in the run's attempts). Spans leave in batches from the
SDK's own thread (`BatchSpanProcessor`): the event loop only hands them over.

Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`), plus promptdeck's
own (`promptdeck.*`). Prompt and completion text are left out unless `PROMPTDECK_TRACE_CONTENT`
says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from promptdeck import __version__
from promptdeck.domain.runs import ERROR, RunRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import SpanContext

    from promptdeck.engine.invoke import InvokeRequest

log = logging.getLogger("promptdeck.traces")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SERVICE_NAME = "promptdeck"
OTLP_HTTP = "http/protobuf"
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


class RunTraces:
    """The run observer that makes each run's spans. Made with the exporter its spans go to:
    OTLP/HTTP from the environment (`from_environment`), or any other (a test's in-memory one)."""

    def __init__(
        self, exporter: SpanExporter, *, content: bool = False, service_name: str = SERVICE_NAME
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.content = content
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; the service name given here wins.
        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import Status, StatusCode

        self.provider: TracerProvider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
        self._processor = BatchSpanProcessor(exporter)  # OTEL_BSP_* tune it
        self.provider.add_span_processor(self._processor)
        self._scope = InstrumentationScope("promptdeck", __version__)
        self._unset = Status(StatusCode.UNSET)
        self._resource = self.provider.resource
        self._ReadableSpan = ReadableSpan
        self._sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], *, content: bool = False) -> RunTraces | None:
        """Traces exported as the OTEL_* variables say, or None when they ask for none or the
        `otel` extra is missing (then one warning says how to install it)."""
        if not tracing_wanted(environ):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "the OTEL_* variables ask for traces, but the OpenTelemetry SDK is not installed: "
                "no traces are exported (install promptdeck's `otel` extra: pip install 'promptdeck[otel]')"
            )
            return None
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        if protocol and protocol.strip().lower() != OTLP_HTTP:
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=%s: promptdeck exports traces over %s", protocol, OTLP_HTTP
            )
        service = environ.get("OTEL_SERVICE_NAME", "").strip() or SERVICE_NAME
        return cls(OTLPSpanExporter(), content=content, service_name=service)  # endpoint etc.: OTEL_*

    def run_ended(self, record: RunRecord, request: InvokeRequest) -> None:
        """The run's span and one child span per upstream attempt, made finished with the run's
        own times and handed to the batch processor; the run keeps the span's trace id.

        The spans are the SDK's `ReadableSpan`s, made directly: through `Tracer.start_span` each
        span's attributes were checked and copied one by one, about 70 µs a run on the event
        loop; ours are plain values already (bench/README.md, "With traces on")."""
        trace, provider, unset, resource = self._trace, self.provider, self._unset, self._resource
        ReadableSpan, SpanContext, SpanKind = self._ReadableSpan, trace.SpanContext, trace.SpanKind
        Status, StatusCode = trace.Status, trace.StatusCode
        parent = self._caller_span(request.traceparent)
        attributes = run_attributes(record, request)
        name = f"chat {record.deployment}"
        trace_id = parent.trace_id if parent is not None else provider.id_generator.generate_trace_id()
        sampled = provider.sampler.should_sample(
            trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent is not None else None,
            trace_id,
            name,
            SpanKind.SERVER,
            attributes,
        )
        if not sampled.decision.is_sampled():  # type: ignore[no-untyped-call]  # sampled out: no trace id
            return
        if self.content:
            add_content(attributes, record)
        flags = self._sampled
        state = sampled.trace_state
        own = SpanContext(trace_id, provider.id_generator.generate_span_id(), False, flags, state)
        since = record.created_at - _EPOCH  # not `.timestamp()`, which asks the OS for the zone
        start = (since.days * 86_400 + since.seconds) * 1_000_000_000 + since.microseconds * 1000
        end = start + int(record.duration_ms * 1e6)
        spans = [
            ReadableSpan(
                name,
                own,
                parent,
                resource,
                {**attributes, **dict(sampled.attributes or {})},
                kind=SpanKind.SERVER,
                status=Status(StatusCode.ERROR, record.error_message) if record.status == ERROR else unset,
                start_time=start,
                end_time=end,
                instrumentation_scope=self._scope,
            )
        ]
        for attempt in record.attempts or ():
            began = start + int(float(attempt.get("began_ms") or 0.0) * 1e6)
            spans.append(
                ReadableSpan(
                    f"chat {_model_name(attempt.get('model'), attempt.get('provider'))}",
                    SpanContext(trace_id, provider.id_generator.generate_span_id(), False, flags, state),
                    own,
                    resource,
                    attempt_attributes(attempt),
                    kind=SpanKind.CLIENT,
                    status=Status(StatusCode.ERROR, attempt.get("error"))
                    if attempt.get("status") == ERROR
                    else unset,
                    start_time=began,
                    end_time=min(end, began + int(float(attempt.get("duration_ms") or 0.0) * 1e6)),
                    instrumentation_scope=self._scope,
                )
            )
        for span in spans:
            self._processor.on_end(span)
        record.trace_id = f"{trace_id:032x}"

    def _caller_span(self, traceparent: str | None) -> SpanContext | None:
        """The caller's span from a valid `traceparent`, else None (a new trace)."""
        if not traceparent:
            return None
        found = self._trace.get_current_span(self._propagator.extract({"traceparent": traceparent}))
        context = found.get_span_context()
        return context if context.is_valid else None

    def force_flush(self, timeout_ms: int = 30_000) -> bool:
        """Export every span made so far (blocks: call it off the event loop)."""
        return self.provider.force_flush(timeout_ms)

    async def shutdown(self) -> None:
        """Export what is left and stop the exporter's thread, when the server stops."""
        await asyncio.to_thread(self.provider.shutdown)


def run_attributes(record: RunRecord, request: InvokeRequest) -> dict[str, Any]:
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
    for name, value in (request.params or {}).items():
        if name in REQUEST_PARAMS and isinstance(value, int | float) and not isinstance(value, bool):
            attributes[REQUEST_PARAMS[name]] = value
    return {name: value for name, value in attributes.items() if value is not None}


def attempt_attributes(attempt: Mapping[str, Any]) -> dict[str, Any]:
    """One upstream attempt's span attributes: few, as every run has at least one attempt
    (each attribute costs the SDK a few µs to make and to encode)."""
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
