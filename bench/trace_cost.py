"""What tracing a run costs in CPU, in this process: `RunTraces.run_ended` on the event loop
(sampled, joining a caller's trace, sampled out), then the export task's work per run (its two
spans made and encoded), and the OpenTelemetry SDK's OTLP encoder on the same two spans, for
comparison (when the SDK is installed).

    .venv/bin/python bench/trace_cost.py            # a few seconds
    .venv/bin/python bench/trace_cost.py --number 50000

The full picture (requests/s with traces on and off) is `gateway_overhead.py --traces`.
"""

from __future__ import annotations

import argparse
import asyncio
import timeit
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from promptdeck.domain.runs import RunRecord
from promptdeck.engine.otlp_protobuf import SpanData, encode_span
from promptdeck.engine.run_traces import RunTraces, run_spans
from sample_run import a_run

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PARAMS = {"temperature": 0.3, "max_tokens": 50}


class NoSink:
    async def send(self, body: bytes, *, retry: bool = True) -> bool:
        return True

    async def close(self) -> None:
        pass


def per_call_us(function: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


async def measure(number: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, environ, traceparent in (
        ("run_ended, a new trace", {}, None),
        ("run_ended, a caller's trace", {}, TRACEPARENT),
        ("run_ended, sampled out", {"OTEL_TRACES_SAMPLER": "always_off"}, None),
    ):
        traces = RunTraces(NoSink(), environ=environ | {"OTEL_BSP_MAX_QUEUE_SIZE": str(10**9)})
        request = SimpleNamespace(traceparent=traceparent, params=PARAMS)
        record = a_run()

        def end(traces: RunTraces = traces, request: Any = request, record: RunRecord = record) -> None:
            traces.run_ended(record, request)

        figures[label] = per_call_us(end, number)
        traces._queue.clear()  # not exported: only the loop's share is measured here
        await traces.shutdown()

    record, traces = a_run(), RunTraces(NoSink(), environ={})
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    figures["spans made, per run"] = per_call_us(lambda: run_spans(record, PARAMS, trace_id, None), number)
    spans = run_spans(record, PARAMS, trace_id, None)
    figures["spans encoded, per run"] = per_call_us(lambda: [encode_span(s) for s in spans], number)
    batch = [encode_span(s) for s in spans] * 256
    figures["request of 512 spans, per run"] = (
        per_call_us(lambda: traces.encoder.encode_spans(batch), max(number // 500, 5)) / 256
    )
    sdk = sdk_encoding(spans, traces)
    if sdk is not None:
        figures["SDK encoder, per run (2 spans)"] = per_call_us(sdk, number)
    await traces.shutdown()
    return figures


def sdk_encoding(spans: list[SpanData], traces: RunTraces) -> Callable[[], bytes] | None:
    """The SDK's encoder on the same spans, as the SDK's `ReadableSpan`s (made once)."""
    try:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind
    except ImportError:
        return None
    resource = Resource({"service.name": "promptdeck"})
    scope = InstrumentationScope("promptdeck", "0")
    sdk_spans = [
        ReadableSpan(
            span.name,
            SpanContext(int.from_bytes(span.trace_id, "big"), int.from_bytes(span.span_id, "big"), False),
            None,
            resource,
            dict(span.attributes),
            kind=SpanKind.SERVER,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=scope,
        )
        for span in spans
    ]
    return lambda: encode_spans(sdk_spans).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
    args = parser.parse_args()
    for label, micros in asyncio.run(measure(args.number)).items():
        print(f"{label:<34} {micros:7.2f} µs")


if __name__ == "__main__":
    main()
