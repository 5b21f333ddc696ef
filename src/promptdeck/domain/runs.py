"""One invocation, as it is logged."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SUCCESS = "success"
ERROR = "error"


def new_id(at: datetime | None = None) -> str:
    """32 hex digits: the time in milliseconds (12), then 80 random bits, like a UUIDv7's.

    Ids made later sort later, so the indexes on ids (`runs.id`, `request_id`, the metadata's
    primary key) take each new one at their end instead of on a random page: about half the
    run writer's page writes (docs/performance.md). 80 random bits keep ids made in the same
    millisecond apart, and make them as hard to guess as a run id needs to be."""
    millis = int(at.timestamp() * 1000) if at is not None else time.time_ns() // 1_000_000
    return f"{millis & 0xFFFF_FFFF_FFFF:012x}{secrets.randbits(80):020x}"


def new_request_id() -> str:
    return "req_" + new_id()


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RunRecord:
    """Filled in as a run proceeds; handed to the writer when it ends, successful or not."""

    workspace_id: str
    dialect: str
    deployment: str
    streamed: bool
    request_id: str = field(default_factory=new_request_id)
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
    deployment_id: str | None = None
    variant: str | None = None
    version_id: str | None = None
    version_number: int | None = None
    model: str | None = None
    provider: str | None = None
    inputs: dict[str, Any] | None = None
    messages: list[dict[str, str]] | None = None
    output: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None
    price_known: bool | None = None
    usage_estimated: bool | None = None
    attempts: list[dict[str, Any]] | None = None
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    status: str = SUCCESS
    stop_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    metadata: dict[str, Any] | None = None
    end_user: str | None = None
    external_id: str | None = None
    api_key_id: str | None = None
    session_id: str | None = None  # the caller's conversation or request this run belongs to
    trace_id: str | None = None  # the OpenTelemetry trace of the run's span, 32 hex digits
    cache_hit: bool | None = None  # answered from the response cache, not the provider
    saved_cost: float | None = None  # on a cache hit, what the provider call cost when it was made

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RUN_FIELDS}


RUN_FIELDS = tuple(RunRecord.__dataclass_fields__)
