"""The Audit log screen (owners only): the workspace's admin actions, newest first, filtered as
`GET /api/audit` filters (the same `AuditFilters`, the same store page), each with what changed
as a line diff of its before and after values, and links to the API's exports."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from promptdeck.domain.errors import ValidationFailed
from promptdeck.store.audit_log import AuditFilters
from promptdeck.store.console_sessions import Session
from promptdeck.web.diff_view import DiffLine, as_lines, line_diff
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Owner, services

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
FILTERS = ("action", "actor", "target_type", "target_id", "since", "until")


def changes(before: Any, after: Any) -> list[DiffLine]:
    """What an event changed, as JSON lines marked + and - (unchanged stretches folded)."""
    return line_diff(as_lines("value", before), as_lines("value", after))


def audit_url(path: str, given: dict[str, str], **more: str) -> str:
    query = urlencode({k: v for k, v in (given | more).items() if v})
    return path + ("?" + query if query else "")


@router.get("/audit")
async def audit_log(request: Request, session: Session = Owner) -> Response:
    given = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    cursor = request.query_params.get("cursor") or None
    audit, workspace_id = services(request).audit, session.member.workspace_id
    error, status = None, 200
    try:
        found = await audit.page(workspace_id, AuditFilters.parse(**given), PAGE_SIZE, cursor)
    except ValidationFailed as exc:
        error, status = exc.message, 422
        found = await audit.page(workspace_id, AuditFilters(), PAGE_SIZE)
    events = [event | {"changes": changes(event["before"], event["after"])} for event in found["data"]]
    next_cursor = found["next_cursor"]
    return page(
        request,
        "audit.html",
        status,
        error=error,
        events=events,
        filters=given,
        next_href=audit_url("/audit", given, cursor=next_cursor) if next_cursor else None,
        first_href=audit_url("/audit", given) if cursor else None,
        export_jsonl=audit_url("/api/audit/export", given, format="jsonl"),
        export_csv=audit_url("/api/audit/export", given, format="csv"),
    )
