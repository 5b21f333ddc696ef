"""The caller's span in a W3C `traceparent` header, read without the OpenTelemetry SDK.

A run's span joins that trace as the span's child. A run keeps the trace it joined
(`RunRecord.trace_id`) even when promptdeck exports no traces of its own, so a caller can find
the run from its own trace; that must cost nothing. The rules are W3C Trace Context's, as the
SDK's propagator applies them: a value they reject names no trace.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class CallerSpan(NamedTuple):
    """The caller's span a `traceparent` names: ids as lower-case hex, and its trace flags."""

    trace_id: str
    span_id: str
    flags: int


def caller_span(traceparent: str | None) -> CallerSpan | None:
    """The span of a valid `traceparent`, else None."""
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):  # a future version may add fields
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return CallerSpan(trace_id, span_id, int(flags, 16))


def traceparent_trace_id(traceparent: str | None) -> str | None:
    """The trace id (32 lower-case hex digits) of a valid `traceparent`, else None."""
    span = caller_span(traceparent)
    return span.trace_id if span is not None else None
