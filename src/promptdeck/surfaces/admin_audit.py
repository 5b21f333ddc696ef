"""The admin API's audit log under `/api/audit`: the workspace's admin actions, newest first,
filtered and paged, and the same as a streamed JSON Lines or CSV export. Reading it needs the
`admin` scope (a console member: the owner role); `scope=instance` shows the instance's own
actions (workspaces created, archived, ...) to an instance administrator."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from promptdeck.domain.errors import Forbidden
from promptdeck.domain.keys import allows
from promptdeck.engine.auth import Caller
from promptdeck.store.audit_log import AuditFilters
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.exports import check_format, export_response
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Audit log"],
    responses=ERRORS["admin"],
)
Scope = Literal["workspace", "instance"]
SCOPE_HELP = "workspace (default): this workspace's actions; instance: the instance's own (instance admins)"
CSV_COLUMNS = (
    "id",
    "created_at",
    "workspace_id",
    "actor",
    "actor_key_id",
    "address",
    "user_agent",
    "action",
    "target_type",
    "target_id",
    "before",
    "after",
)


def audit_filters(
    action: str | None = Query(None, description="exact (key.created), or a prefix ending in . or * (key.)"),
    actor: str | None = Query(None, description="a member's email or a key's name"),
    target_type: str | None = Query(None, description="key, credential, member, variant, ..."),
    target_id: str | None = None,
    since: str | None = Query(None, description="ISO 8601 time; events at or after it"),
    until: str | None = Query(None, description="ISO 8601 time; events before it"),
) -> AuditFilters:
    """FastAPI dependency: the audit log's filters, every problem reported at once (422)."""
    return AuditFilters.parse(
        action=action, actor=actor, target_type=target_type, target_id=target_id, since=since, until=until
    )


Filters = Depends(audit_filters)


def audited_workspace(caller: Caller, scope: Scope) -> str | None:
    """Whose events the caller may read: its workspace's, needing `admin` (a read key's holder
    is not told who changed what), or with `scope=instance` the instance's, for its admins."""
    if not allows(caller.scopes, "admin"):
        raise Forbidden("reading the audit log needs the 'admin' scope (a console member: the owner role)")
    if scope == "workspace":
        return caller.workspace_id
    if not caller.instance_admin:
        raise Forbidden("scope=instance: only an instance administrator reads the instance's audit log")
    return None


@router.get(
    "/audit", summary="Admin actions, newest first; pass next_cursor back as cursor for the next page"
)
async def list_audit(
    request: Request,
    caller: Caller = Admin,
    filters: AuditFilters = Filters,
    scope: Scope = Query("workspace", description=SCOPE_HELP),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> dict[str, Any]:
    return await services(request).audit.page(audited_workspace(caller, scope), filters, limit, cursor)


@router.get(
    "/audit/export",
    summary="Every matching admin action as JSON Lines or CSV, newest first, streamed",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
async def export_audit(
    request: Request,
    caller: Caller = Admin,
    filters: AuditFilters = Filters,
    scope: Scope = Query("workspace", description=SCOPE_HELP),
    format: str = Query("jsonl", description="jsonl | csv"),
) -> StreamingResponse:
    check_format(format)
    found = services(request).audit.iterate(audited_workspace(caller, scope), filters)
    return export_response(found, format, CSV_COLUMNS, "audit")
