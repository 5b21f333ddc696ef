"""The admin API's runs (list, export as JSON Lines or CSV, one run, feedback, a session's runs)
and run retention under `/api/`: same gate, scopes and error shape as `admin.py`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from promptdeck.admin_models import RetentionIn
from promptdeck.audit_trail import audit
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.run_filters import RunFilters, check_sort, parse_filters
from promptdeck.engine.auth import Caller
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.exports import check_format, export_response
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Admin"],
    responses=ERRORS["admin"],
)


class FeedbackIn(BaseModel):
    score: float | None = Field(None, ge=0, le=1, description="quality, 0 (worst) to 1 (best)")
    thumbs: Literal["up", "down"] | None = None
    correction: str | None = Field(None, description="what the answer should have been")
    metadata: dict[str, Any] | None = None


def run_filters(
    deployment: str | None = None,
    variant: str | None = None,
    version: str | None = Query(None, description="version number"),
    model: str | None = None,
    provider: str | None = None,
    status: str | None = Query(None, description="success | error"),
    user: str | None = Query(None, description="the end user"),
    session: str | None = Query(None, description="the session id (X-Promptdeck-Session-Id)"),
    since: str | None = Query(None, description="ISO 8601 time; runs at or after it"),
    until: str | None = Query(None, description="ISO 8601 time; runs before it"),
    q: str | None = Query(None, description="case-insensitive text in the inputs or the output"),
    meta: list[str] = Query(
        [], description="repeatable: key:value (equals), key (exists), key>n, key<n (numeric)"
    ),
) -> RunFilters:
    """FastAPI dependency: the run log's filters, every problem reported at once (422)."""
    return parse_filters(
        deployment=deployment,
        variant=variant,
        version=version,
        model=model,
        provider=provider,
        status=status,
        user=user,
        session=session,
        since=since,
        until=until,
        q=q,
        meta=meta,
    )


Filters = Depends(run_filters)
SORT_HELP = "time (default) | latency | cost | tokens"


@router.get("/runs", summary="Runs, filtered and sorted; pass next_cursor back as cursor for the next page")
async def list_runs(
    request: Request,
    caller: Caller = Admin,
    filters: RunFilters = Filters,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = None,
    sort: str = Query("time", description=SORT_HELP),
    order: str = Query("desc", description="desc (default) | asc"),
) -> dict[str, Any]:
    checked_sort, checked_order = check_sort(sort, order)
    return await services(request).run_log.page(
        caller.workspace_id, limit, cursor, filters, checked_sort, checked_order
    )


@router.get("/runs/metadata-keys", summary="The metadata keys of the last 7 days' runs, with examples")
async def metadata_keys(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).run_log.metadata_keys(caller.workspace_id)


CSV_COLUMNS = (
    "id",
    "request_id",
    "created_at",
    "dialect",
    "deployment",
    "variant",
    "version_number",
    "model",
    "provider",
    "status",
    "end_user",
    "session_id",
    "external_id",
    "duration_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "stop_reason",
    "error_code",
    "error_message",
    "inputs",
    "output",
    "metadata",
)


@router.get(
    "/runs/export",
    summary="Every matching run as JSON Lines or CSV, streamed",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
async def export_runs(
    request: Request,
    caller: Caller = Admin,
    filters: RunFilters = Filters,
    format: str = Query("jsonl", description="jsonl | csv"),
    sort: str = Query("time", description=SORT_HELP),
    order: str = Query("desc", description="desc (default) | asc"),
) -> StreamingResponse:
    check_format(format)
    checked_sort, checked_order = check_sort(sort, order)
    found = services(request).run_log.iterate(caller.workspace_id, filters, checked_sort, checked_order)
    return export_response(found, format, CSV_COLUMNS, "runs")


@router.get("/runs/{run_id}", summary="One run, by id or request id, with its feedback")
async def get_run(run_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).find_run(caller.workspace_id, run_id)


@router.get(
    "/sessions/{session_id}",
    summary="A session's runs, oldest first, with its totals; pass next_cursor back as cursor",
)
async def get_session(
    session_id: str,
    request: Request,
    caller: Caller = Admin,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = None,
) -> dict[str, Any]:
    """What a multi-turn conversation (or any calls sharing a session id) did: the totals of
    every run in it, and a page of its runs in the order they started. 404 when it has none."""
    sessions = services(request).run_sessions
    totals = await sessions.totals(caller.workspace_id, session_id)
    found = await sessions.page(caller.workspace_id, session_id, limit, cursor)
    return {"session_id": session_id, "totals": totals, **found}


@router.post("/runs/{run_id}/feedback", status_code=201, summary="Score, thumbs or a correction for a run")
async def add_feedback(
    run_id: str, body: FeedbackIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    if body.score is None and body.thumbs is None and body.correction is None:
        raise ValidationFailed("feedback needs at least one of score, thumbs, correction")
    app = services(request)
    run = await app.find_run(caller.workspace_id, run_id)
    (stored,) = await app.feedback.add(
        caller.workspace_id,
        [
            {
                "run_id": run["id"],
                "quality": body.score,
                "thumbs": body.thumbs,
                "text": body.correction,
                "metadata": body.metadata,
            }
        ],
    )
    return stored


@router.get("/settings/retention", summary="How long this workspace keeps its runs")
async def get_retention(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"days": await services(request).retention.get_days(caller.workspace_id)}


@router.put("/settings/retention", summary="Keep runs this many days (null: forever)")
async def put_retention(body: RetentionIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    before = await app.retention.get_days(caller.workspace_id)
    await app.retention.set_days(caller.workspace_id, body.days)
    days = {"days": before}, {"days": body.days}
    await audit(request, caller, "retention.set", "workspace", caller.workspace_id, *days)
    return {"days": body.days}
