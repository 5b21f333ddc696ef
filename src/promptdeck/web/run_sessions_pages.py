"""A session's page: its runs in the order they started, each as a turn of the conversation (what
the caller said, what it was answered), with the session's totals above. Read through
`RunSessions` (what `GET /api/sessions/{id}` serves): a page of runs costs one indexed query.

A run's "said" is the last user message of its rendered messages (in a chat call, the caller's
newest message; in a templated one, the template filled in), else its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response

from promptdeck.domain.errors import NotFound
from promptdeck.store.console_sessions import Session
from promptdeck.web import charts
from promptdeck.web.logs_pages import run_href
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Member, services
from promptdeck.web.usage_pages import Card

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50


@dataclass(frozen=True)
class Turn:
    """One run as the session page shows it."""

    run: dict[str, Any]
    href: str
    said: str  # the last user message, or the inputs as `name: value` lines
    said_as: str  # "user" or "inputs"
    answered: str  # the output, or the error


def last_user_message(messages: Any) -> str | None:
    for message in reversed(messages or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
    return None


def turn(run: dict[str, Any]) -> Turn:
    said, said_as = last_user_message(run.get("messages")), "user"
    if said is None:
        said_as = "inputs"
        said = "\n".join(f"{name}: {value}" for name, value in (run.get("inputs") or {}).items())
    if run.get("status") == "error":
        answered = f"{run.get('error_code') or 'error'}: {run.get('error_message') or ''}".strip()
    else:
        answered = run.get("output") or ""
    return Turn(run, run_href(run), said, said_as, answered)


def total_cards(session_id: str, totals: dict[str, Any]) -> list[Card]:
    logs = "/logs?" + urlencode({"session": session_id})
    unpriced = totals["unpriced_runs"]
    return [
        Card("Runs", charts.exact(totals["runs"], "count"), logs, f"{totals['errors']} failed"),
        Card(
            "Cost",
            charts.exact(totals["cost"], "usd"),
            logs,
            f"{unpriced} without a known price" if unpriced else "",
        ),
        Card(
            "Tokens",
            charts.exact(totals["input_tokens"] + totals["output_tokens"], "count"),
            logs,
            f"{totals['input_tokens']:,} in · {totals['output_tokens']:,} out",
        ),
        Card("Duration", charts.exact(totals["span_ms"], "ms"), logs, "first start to last end"),
    ]


@router.get("/sessions/{session_id}")
async def session_page(
    session_id: str, request: Request, cursor: str = "", session: Session = Member
) -> Response:
    workspace_id = session.member.workspace_id
    sessions = services(request).run_sessions
    try:
        totals = await sessions.totals(workspace_id, session_id)
    except NotFound:
        return page(request, "run_session.html", 404, session_id=session_id, totals=None, turns=[])
    found = await sessions.page(workspace_id, session_id, PAGE_SIZE, cursor or None)
    here = f"/sessions/{quote(session_id, safe='')}"
    return page(
        request,
        "run_session.html",
        session_id=session_id,
        totals=totals,
        cards=total_cards(session_id, totals),
        turns=[turn(run) for run in found["data"]],
        logs_href="/logs?" + urlencode({"session": session_id}),
        next_href=here + "?" + urlencode({"cursor": found["next_cursor"]}) if found["next_cursor"] else None,
        first_href=here if cursor else None,
    )
