"""OTLP trace export requests (`ExportTraceServiceRequest`) encoded as protobuf bytes by hand.

The OpenTelemetry SDK builds a protobuf message object per span, attribute and value before
serializing them: some 60 µs of CPU for a run's two spans, on the server's only core. The
spans promptdeck exports are few in shape (one resource, one scope, plain attribute values),
so they are written straight to bytes here: the resource and the scope once, each attribute
key once, and a span as a handful of byte strings joined. Pure: no I/O and no state but those
caches. Field numbers are opentelemetry-proto's (`opentelemetry/proto/trace/v1/trace.proto`,
`common/v1/common.proto`, `resource/v1/resource.proto`, `collector/trace/v1/trace_service.proto`);
tests/engine/test_otlp_protobuf.py decodes the bytes with the official classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

AttributeValue = str | bool | int | float | Sequence[str | bool | int | float]

# Span.kind and Status.code values.
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
# Span.flags: the W3C trace flags in bits 0-7, then whether the parent's remoteness is known and is so.
FLAG_SAMPLED = 0x01
FLAG_HAS_IS_REMOTE = 0x100
FLAG_IS_REMOTE = 0x200

_U64 = (1 << 64) - 1
_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack


class SpanData(NamedTuple):
    """One finished span, its ids as bytes (16 and 8; no parent: b"")."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    flags: int
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttributeValue]
    status_code: int = STATUS_UNSET
    status_message: str = ""
    trace_state: str = ""


def varint(value: int) -> bytes:
    """A base-128 varint; a negative int64 as its 64-bit two's complement (ten bytes)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if 0 < value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= _U64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(0x80)]


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message) after its tag."""
    return tag + varint(len(payload)) + payload


def any_value(value: AttributeValue) -> bytes:
    """An AnyValue's fields: string 1, bool 2, int 3, double 4, array 5 (ArrayValue.values 1)."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", value.encode())  # type: ignore[union-attr]
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + varint(value)  # type: ignore[arg-type]
    if kind is float:
        return b"\x21" + _double(value)
    if isinstance(value, str | bool | int | float):  # a subclass (an IntEnum, a str enum)
        return any_value(_plain(value))
    return _field(b"\x2a", b"".join(_field(b"\x0a", any_value(item)) for item in value))


def _plain(value: str | bool | int | float) -> str | bool | int | float:
    for kind in (bool, str, int, float):
        if isinstance(value, kind):
            return kind(value)
    raise TypeError(value)


_KEYS: dict[str, bytes] = {}
# Whole attributes whose value repeats from run to run (the dialect, the provider, a model, a
# deployment), encoded once. Names are promptdeck's own constants; values are bounded by size
# here and the cache by count (emptied when full), so it holds only the current working set.
_PAIRS: dict[tuple[bytes, str, type, str | bool], bytes] = {}
_PAIRS_CAP = 4096
_PAIR_VALUE_CAP = 100


def key_value(key: str, value: AttributeValue) -> bytes:
    """A KeyValue (key 1, value 2)."""
    head = _KEYS.get(key)
    if head is None:
        head = _field(b"\x0a", key.encode())
        if len(_KEYS) < _PAIRS_CAP:
            _KEYS[key] = head
    return head + _field(b"\x12", any_value(value))


def attributes(tag: bytes, values: Mapping[str, AttributeValue]) -> bytes:
    """Each attribute as a repeated KeyValue field with the given tag."""
    parts = []
    for key, value in values.items():
        kind = type(value)
        if kind is bool or (kind is str and len(value) <= _PAIR_VALUE_CAP):  # type: ignore[arg-type]
            pair = (tag, key, kind, value)
            encoded = _PAIRS.get(pair)  # type: ignore[arg-type]
            if encoded is None:
                if len(_PAIRS) >= _PAIRS_CAP:
                    _PAIRS.clear()
                encoded = _PAIRS[pair] = _field(tag, key_value(key, value))  # type: ignore[index]
            parts.append(encoded)
        else:
            parts.append(_field(tag, key_value(key, value)))
    return b"".join(parts)


def encode_span(span: SpanData) -> bytes:
    """A Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
    start 7 and end 8 (fixed64), attributes 9, status 15 (message 2, code 3), flags 16 (fixed32)."""
    parts = [b"\x0a\x10", span.trace_id, b"\x12\x08", span.span_id]
    if span.trace_state:
        parts.append(_field(b"\x1a", span.trace_state.encode()))
    if span.parent_span_id:
        parts += (b"\x22\x08", span.parent_span_id)
    if span.name:  # proto3 leaves out what is empty or zero: the official serializer's bytes
        parts.append(_field(b"\x2a", span.name.encode()))
    if span.kind:
        parts += (b"\x30", _SMALL[span.kind])
    if span.start_ns:
        parts += (b"\x39", _fixed64(span.start_ns))
    if span.end_ns:
        parts += (b"\x41", _fixed64(span.end_ns))
    parts.append(attributes(b"\x4a", span.attributes))
    if span.status_code or span.status_message:
        status = _field(b"\x12", span.status_message.encode()) if span.status_message else b""
        code = b"\x18" + varint(span.status_code) if span.status_code else b""
        parts.append(_field(b"\x7a", status + code))
    if span.flags:
        parts += (b"\x85\x01", _fixed32(span.flags))
    return b"".join(parts)


class TraceRequestEncoder:
    """ExportTraceServiceRequest bytes for one resource and one instrumentation scope, both
    encoded once: resource_spans 1 → ResourceSpans(resource 1 (attributes 1), scope_spans 2)
    → ScopeSpans(scope 1 (name 1, version 2), spans 2)."""

    def __init__(self, resource: Mapping[str, AttributeValue], scope_name: str, scope_version: str) -> None:
        self._resource = _field(b"\x0a", attributes(b"\x0a", resource))
        scope = _field(b"\x0a", scope_name.encode())
        if scope_version:
            scope += _field(b"\x12", scope_version.encode())
        self._scope = _field(b"\x0a", scope)

    def encode(self, spans: Iterable[SpanData]) -> bytes:
        return self.encode_spans([encode_span(span) for span in spans])

    def encode_spans(self, encoded: Iterable[bytes]) -> bytes:
        """The request holding spans already encoded by `encode_span`."""
        scope_spans = self._scope + b"".join([_field(b"\x12", span) for span in encoded])
        return _field(b"\x0a", self._resource + _field(b"\x12", scope_spans))
