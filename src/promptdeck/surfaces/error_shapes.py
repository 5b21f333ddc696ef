"""Each dialect's error body as a model, and the `responses=` mappings that put them in the
OpenAPI document: a router declares its dialect's errors once (`ERRORS[...]`), a route adds
only what it alone can answer (`INVOKE_ERRORS[...]`). The models describe what the
`render_error` of each dialect writes; tests/test_openapi_fuzz.py holds the two together."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FetchHiveError(BaseModel):
    """WIRE.md §1: `error` and `message` say the same; `request_id` when a run was started."""

    model_config = ConfigDict(extra="forbid")

    error: str
    message: str
    error_code: str = Field(
        description="validation_error, unauthorized, not_found, context_length_exceeded, provider_error, …"
    )
    request_id: str | None = Field(None, description="the run's request id, when one was started")


class VellumError(BaseModel):
    """WIRE.md §2."""

    model_config = ConfigDict(extra="forbid")

    detail: str


class OpenAIErrorObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str = Field(description="invalid_request_error, permission_error, requests, server_error")
    param: str | None = Field(description="the request field at fault, when there is one")
    code: str | None = Field(description="invalid_value, context_length_exceeded, provider_error, …")


class OpenAIError(BaseModel):
    """OpenAI's shape, spoken by Traceport and the chat-completions dialect (WIRE.md §3, §4)."""

    model_config = ConfigDict(extra="forbid")

    error: OpenAIErrorObject


class AdminErrorObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="validation_error, unauthorized, forbidden, not_found, conflict, …")
    message: str
    details: Any = Field(description="e.g. every validation problem; null when there is nothing more")


class AdminError(BaseModel):
    """The admin API's shape (`surfaces/admin.render_error`)."""

    model_config = ConfigDict(extra="forbid")

    error: AdminErrorObject


Responses = dict[int | str, dict[str, Any]]

WHY = {
    400: "The request is invalid (a field, the JSON, or a value out of range), or the prompt it "
    "renders is longer than the model's context (`context_length_exceeded`)",
    401: "No API key, or an unknown or revoked one",
    403: "The key (or console member) may not do this",
    404: "No such path, deployment, variant, prompt, version or run",
    405: "The path exists, but not for this method",
    409: "It conflicts with what exists (a duplicate name, an unsafe variant move)",
    413: "The request body is over the server's limit",
    422: "The request is invalid (a field, the JSON, or a value out of range)",
    429: "Rate limited (the workspace's own limit, `too_many_requests`, or an upstream's passed on) "
    "or over a budget (`budget_exceeded`); wait Retry-After seconds",
    500: "promptdeck's own fault (logged)",
    502: "The provider failed before answering (after the engine's retries and fallbacks)",
    503: "Limits or budgets cannot be checked: their store is unreachable (`quota_store_unavailable`)",
}
_SECONDS = {"type": "integer"}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait", "schema": _SECONDS},
    "X-RateLimit-Limit": {"description": "the tightest rate limit (per minute)", "schema": _SECONDS},
    "X-RateLimit-Remaining": {"description": "what is left of it now", "schema": _SECONDS},
    "X-RateLimit-Reset": {"description": "seconds until its window is empty again", "schema": _SECONDS},
}


def responses(shape: type[BaseModel], *statuses: int) -> Responses:
    """`statuses`, each answered with a `shape` body."""
    out: Responses = {}
    for status in statuses:
        out[status] = {"model": shape, "description": WHY[status]}
        if status == 429:
            out[status]["headers"] = RETRY_AFTER
    return out


# What every route of a dialect may answer. Validation is 422 where the dialect follows HTTP
# (Fetch Hive, admin), 400 where its vendor does (Vellum, OpenAI).
ERRORS: dict[str, Responses] = {
    "fetchhive": responses(FetchHiveError, 401, 403, 404, 405, 413, 422, 500),
    "vellum": responses(VellumError, 400, 403, 404, 405, 413, 500),
    "openai": responses(OpenAIError, 400, 401, 403, 404, 405, 413, 500),
    "admin": responses(AdminError, 401, 403, 404, 405, 409, 413, 422, 500),
}
# What a route that runs a prompt and waits for its answer adds.
INVOKE_ERRORS: dict[str, Responses] = {
    "fetchhive": responses(FetchHiveError, 400, 429, 502, 503),  # 400: a prompt over the model's context
    "vellum": responses(VellumError, 429, 503),
    "openai": responses(OpenAIError, 429, 502, 503),
    "admin": responses(AdminError, 502),
}
