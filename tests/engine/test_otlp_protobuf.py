"""The hand-written OTLP encoder, judged by the official `opentelemetry-proto` classes: every
field of every span decoded as a collector decodes it, and the same request as the SDK's own
encoder makes from the same spans."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from promptdeck.engine.otlp_protobuf import (
    FLAG_HAS_IS_REMOTE,
    FLAG_IS_REMOTE,
    FLAG_SAMPLED,
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    SpanData,
    TraceRequestEncoder,
    varint,
)

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
PARENT = bytes.fromhex("00f067aa0ba902b7")
OWN = bytes.fromhex("b7ad6b7169203331")
CHILD = bytes.fromhex("0102030405060708")
RESOURCE = {"service.name": "promptdeck", "service.version": "1.2.3", "deployment.environment": "prød"}

EVERY_TYPE: dict[str, Any] = {
    "service.name": "promptdeck",  # also a resource attribute: encoded apart
    "a.string": "héllo ✓ 🦉",
    "an.empty.string": "",
    "a.true": True,
    "a.false": False,
    "an.int": 11,
    "a.zero": 0,
    "a.negative": -42,
    "a.big": 2**63 - 1,
    "a.double": 0.3,
    "a.whole.double": 2.0,
    "a.negative.double": -1e-300,
    "strings": ("stop", "länge"),
    "mixed": (1, 2.5, True, "x"),
    "nothing": (),
}


def decode(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    assert request.SerializeToString() == body  # canonical: field order and no stray bytes
    return request


def python(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(python(item) for item in value.array_value.values)
    assert kind is not None
    return getattr(value, kind)


def attributes(values: Any) -> dict[str, Any]:
    return {pair.key: python(pair.value) for pair in values}


def test_every_field_of_a_joined_span_an_error_and_every_value_type() -> None:
    root = SpanData(
        TRACE,
        OWN,
        PARENT,  # joined a caller's trace
        FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE,
        "chat résumé-ünïcode",
        KIND_SERVER,
        1_733_385_600_123_456_789,
        1_733_385_600_987_654_321,
        EVERY_TYPE,
        trace_state="vendor=a,other=b",
    )
    child = SpanData(
        TRACE,
        CHILD,
        OWN,
        FLAG_SAMPLED | FLAG_HAS_IS_REMOTE,
        "chat gpt-4o",
        KIND_CLIENT,
        1_733_385_600_200_000_000,
        1_733_385_600_300_000_000,
        {"promptdeck.attempt": 1},
        STATUS_ERROR,
        "upstream answered 500: ✗ kaputt",
    )
    request = decode(TraceRequestEncoder(RESOURCE, "promptdeck", "1.2.3").encode([root, child]))

    (resource_spans,) = request.resource_spans
    assert attributes(resource_spans.resource.attributes) == RESOURCE
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("promptdeck", "1.2.3")
    first, second = scope_spans.spans

    assert (first.trace_id, first.span_id, first.parent_span_id) == (TRACE, OWN, PARENT)
    assert first.trace_state == "vendor=a,other=b"
    assert first.name == "chat résumé-ünïcode" and first.kind == Span.SPAN_KIND_SERVER
    assert first.start_time_unix_nano == 1_733_385_600_123_456_789
    assert first.end_time_unix_nano == 1_733_385_600_987_654_321
    assert attributes(first.attributes) == EVERY_TYPE
    assert [pair.key for pair in first.attributes] == list(EVERY_TYPE)  # in order
    assert first.attributes[3].value.WhichOneof("value") == "bool_value"  # not an int
    assert first.attributes[10].value.WhichOneof("value") == "double_value"  # 2.0 stays a double
    assert not first.HasField("status") and first.status.code == Status.STATUS_CODE_UNSET
    assert first.flags == 0x301 and first.flags & 0xFF == 1  # sampled, parent known remote

    assert (second.trace_id, second.span_id, second.parent_span_id) == (TRACE, CHILD, OWN)
    assert second.trace_state == "" and second.kind == Span.SPAN_KIND_CLIENT
    assert attributes(second.attributes) == {"promptdeck.attempt": 1}
    assert second.status.code == Status.STATUS_CODE_ERROR
    assert second.status.message == "upstream answered 500: ✗ kaputt"
    assert second.flags == 0x101  # parent known to be local


def test_a_root_span_has_no_parent_and_an_empty_batch_is_a_valid_request() -> None:
    encoder = TraceRequestEncoder({"service.name": "x"}, "promptdeck", "")
    span = SpanData(TRACE, OWN, b"", FLAG_SAMPLED | FLAG_HAS_IS_REMOTE, "chat", KIND_SERVER, 1, 2, {})
    (decoded,) = decode(encoder.encode([span])).resource_spans[0].scope_spans[0].spans
    assert decoded.parent_span_id == b"" and decoded.attributes == [] and decoded.flags == 0x101
    assert decoded.start_time_unix_nano == 1 and decoded.end_time_unix_nano == 2
    empty = decode(encoder.encode([]))
    assert empty.resource_spans[0].scope_spans[0].spans == []
    assert empty.resource_spans[0].scope_spans[0].scope.version == ""


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.one_of(
            st.text(),
            st.booleans(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(allow_nan=False),
            st.lists(st.one_of(st.text(), st.integers(-(2**63), 2**63 - 1), st.booleans()), max_size=4).map(
                tuple
            ),
        ),
        max_size=8,
    ),
    st.text(max_size=300),
    st.integers(min_value=0, max_value=2**64 - 1),
)
def test_any_attributes_names_and_times_decode_as_given(
    values: dict[str, Any], name: str, start: int
) -> None:
    span = SpanData(TRACE, OWN, PARENT, 1, name, KIND_CLIENT, start, start, values, STATUS_ERROR, name)
    (decoded,) = (
        decode(TraceRequestEncoder({}, "s", "v").encode([span])).resource_spans[0].scope_spans[0].spans
    )
    assert attributes(decoded.attributes) == values
    assert decoded.name == decoded.status.message == name and decoded.start_time_unix_nano == start


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)])
def test_varints_are_protobufs(value: int) -> None:
    (pair,) = AnyValue.FromString(b"\x18" + varint(value)).ListFields()
    assert pair[1] == value


def test_the_same_request_as_the_sdks_encoder_makes() -> None:
    """From the same spans the SDK's OTLP encoder makes the same message, but for what
    promptdeck does on purpose: the sampled bit in `flags` (the proto's bits 0-7, which the SDK
    leaves out) and no empty `status` on an unset span."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags
    from opentelemetry.trace import Status as SdkStatus

    values = {k: v for k, v in EVERY_TYPE.items() if v != ()}
    trace_id, own, parent = (int.from_bytes(b, "big") for b in (TRACE, OWN, PARENT))
    sdk = ReadableSpan(
        "chat ✓",
        SpanContext(trace_id, own, False, TraceFlags(1)),
        SpanContext(trace_id, parent, True),
        Resource(RESOURCE),
        values,
        kind=SpanKind.SERVER,
        status=SdkStatus(StatusCode.ERROR, "boom"),
        start_time=5,
        end_time=9,
        instrumentation_scope=InstrumentationScope("promptdeck", "1.2.3"),
    )
    ours = SpanData(TRACE, OWN, PARENT, 0x301, "chat ✓", KIND_SERVER, 5, 9, values, STATUS_ERROR, "boom")

    expected = encode_spans([sdk])
    expected.resource_spans[0].scope_spans[0].spans[0].flags |= FLAG_SAMPLED
    assert decode(TraceRequestEncoder(RESOURCE, "promptdeck", "1.2.3").encode([ours])) == expected
