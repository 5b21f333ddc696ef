"""Logs: the run list and one run's page.

The list's filters live in the URL query (a filtered view is a link to share); its pages are
the run log's keyset pages (`RunLog.page`, what `GET /api/runs` serves), so a page costs one
indexed query whatever the number of runs, and nothing counts the matching rows. Live tail
(logs.js) polls `/logs/tail` for the runs newer than the newest shown, rendered by the same
row template. A run's page finds the run through `Services.find_run`, so a run still in the
writer's queue shows too; feedback is given through the admin API (logs.js).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from starlette.datastructures import QueryParams

from promptdeck.domain.deployments import Deployment
from promptdeck.domain.errors import HTTP_STATUS, NotFound, ValidationFailed
from promptdeck.domain.members import role_allows
from promptdeck.domain.run_filters import (
    STATUSES,
    MetaCondition,
    RunFilters,
    parse_filters,
    parse_meta,
    parse_time,
)
from promptdeck.domain.runs import utcnow
from promptdeck.store.console_sessions import Session
from promptdeck.store.run_metadata import value_text
from promptdeck.web.deployments_pages import prompt_slug, view
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Member, services

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
TAIL_LIMIT = 100
# Live tail looks this far back before the newest run shown: a run is logged when it ends but
# dated when it started, so a slow run can land behind one already shown.
TAIL_LOOKBACK = timedelta(minutes=2)
PRESETS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
RANGE_LABELS = {
    "": "any time",
    "1h": "last hour",
    "24h": "last 24 h",
    "7d": "last 7 days",
    "30d": "last 30 days",
}
CUSTOM = "custom"


def meta_condition(text: str) -> MetaCondition:
    """A metadata condition as typed in the console: `key=value` (the value may hold any
    character), or the API's `key:value`, `key>n`, `key<n`, `key` (exists). Raises ValueError."""
    key, equals, value = text.partition("=")
    if not equals:
        return parse_meta(text)
    if not key.strip():
        raise ValueError(f"no key before '=' in {text!r} (write key=value)")
    return MetaCondition(key.strip(), "eq", text=value)


@dataclass(frozen=True)
class LogQuery:
    """The logs page's filters exactly as the URL carries them."""

    deployment: str = ""
    variant: str = ""
    version: str = ""
    model: str = ""
    provider: str = ""
    status: str = ""
    user: str = ""
    session: str = ""
    range: str = ""  # "", a PRESETS key, or CUSTOM (since / until)
    since: str = ""
    until: str = ""
    meta: tuple[str, ...] = ()
    q: str = ""

    @classmethod
    def from_query(cls, params: QueryParams) -> LogQuery:
        def text(name: str) -> str:
            return params.get(name, "").strip()

        return cls(
            deployment=text("deployment"),
            variant=text("variant"),
            version=text("version"),
            model=text("model"),
            provider=text("provider"),
            status=text("status"),
            user=text("user"),
            session=text("session"),
            range=text("range"),
            since=text("since"),
            until=text("until"),
            meta=tuple(m.strip() for m in params.getlist("meta") if m.strip()),
            q=text("q"),
        )

    def pairs(self) -> list[tuple[str, str]]:
        """The non-empty filters as query parameters (meta once per condition)."""
        single = [
            (name, getattr(self, name))
            for name in (
                "deployment",
                "variant",
                "version",
                "model",
                "provider",
                "status",
                "user",
                "session",
                "range",
                "since",
                "until",
                "q",
            )
        ]
        return [(k, v) for k, v in single if v] + [("meta", m) for m in self.meta]

    def url(self, **extra: str) -> str:
        return "/logs?" + urlencode(self.pairs() + [(k, v) for k, v in extra.items() if v])

    @staticmethod
    def as_local(value: str) -> str:
        """A time as a datetime-local field shows it (UTC, no zone); as given if unreadable."""
        try:
            return parse_time(value).strftime("%Y-%m-%dT%H:%M:%S") if value else ""
        except ValueError:
            return value

    @property
    def active(self) -> bool:
        return bool(self.pairs())

    def filters(self, now: datetime) -> RunFilters:
        """The run log's filters; every problem (bad time, malformed condition...) at once."""
        problems: list[str] = []
        since, until = (self.since or None), (self.until or None)
        if self.range in PRESETS:
            since, until = (now - PRESETS[self.range]).isoformat(), None
        elif self.range not in ("", CUSTOM):
            problems.append(f"range: expected one of {', '.join([*PRESETS, CUSTOM])}; got {self.range!r}")
        conditions = []
        for given in self.meta:
            try:
                conditions.append(meta_condition(given))
            except ValueError as exc:
                problems.append(f"meta: {exc}")
        try:
            found = parse_filters(
                deployment=self.deployment or None,
                variant=self.variant or None,
                version=self.version or None,
                model=self.model or None,
                provider=self.provider or None,
                status=self.status or None,
                user=self.user or None,
                session=self.session or None,
                since=since,
                until=until,
                q=self.q or None,
            )
        except ValidationFailed as exc:
            problems.extend(exc.details or [exc.message])
            found = RunFilters()
        if problems:
            raise ValidationFailed("These filters cannot be used: " + "; ".join(problems), details=problems)
        return replace(found, meta=tuple(conditions))


def run_href(run: dict[str, Any]) -> str:
    return f"/logs/{quote(str(run['id']), safe='')}"


async def deployment_choices(request: Request, workspace_id: str) -> tuple[list[str], list[str]]:
    """Deployment names and variant names, for the filters' suggestions."""
    found = await services(request).catalog.deployments.list_deployments(workspace_id)
    variants = sorted({name for d in found for name in d.variants})
    return [d.name for d in found], variants


@router.get("/logs")
async def logs(request: Request, cursor: str = "", session: Session = Member) -> Response:
    query = LogQuery.from_query(request.query_params)
    workspace_id = session.member.workspace_id
    now = utcnow()
    runs: list[dict[str, Any]] = []
    next_href = error = None
    status = 200
    try:
        found = await services(request).run_log.page(
            workspace_id, PAGE_SIZE, cursor or None, query.filters(now)
        )
        runs = found["data"]
        if found["next_cursor"]:
            next_href = query.url(cursor=found["next_cursor"])
    except ValidationFailed as exc:
        error, status = exc.message, HTTP_STATUS.get(exc.code, 422)
    names, variants = await deployment_choices(request, workspace_id)
    return page(
        request,
        "logs.html",
        status,
        query=query,
        runs=runs,
        run_href=run_href,
        next_href=next_href,
        first_href=query.url() if cursor else None,
        on_first_page=not cursor,
        tail_query=urlencode(query.pairs()),
        now=now,
        deployments=names,
        variants=variants,
        providers=services(request).providers.names,
        statuses=STATUSES,
        ranges=RANGE_LABELS,
        custom=CUSTOM,
        error=error,
    )


@router.get("/logs/tail")
async def tail(request: Request, after: str = "", session: Session = Member) -> Response:
    """The runs of the last TAIL_LOOKBACK before `after` and since, newest first, as table
    rows (logs.js adds those it does not show yet)."""
    query = LogQuery.from_query(request.query_params)
    filters = query.filters(utcnow())
    try:
        newest = parse_time(after)
    except ValueError as exc:
        raise ValidationFailed(f"after: expected an ISO 8601 time; got {after!r}") from exc
    since = newest - TAIL_LOOKBACK
    if filters.since is None or filters.since < since:
        filters = replace(filters, since=since)
    found = await services(request).run_log.page(session.member.workspace_id, TAIL_LIMIT, None, filters)
    return page(
        request,
        "logs_rows.html",
        runs=found["data"],
        run_href=run_href,
        more=found["next_cursor"] is not None,
    )


@router.get("/logs/{run_id}")
async def run_page(run_id: str, request: Request, session: Session = Member) -> Response:
    app = services(request)
    workspace_id = session.member.workspace_id
    run = await app.find_run(workspace_id, run_id)
    deployment = None
    with contextlib.suppress(NotFound):  # no such deployment (any more); the run stays readable
        deployment = await app.catalog.deployments.load_deployment(workspace_id, run["deployment"])
    slug = prompt_slug(deployment) if deployment else None
    metadata = [
        (key, value, "/logs?" + urlencode({"meta": f"{key}={value_text(value)}"}))
        for key, value in (run.get("metadata") or {}).items()
    ]
    return page(
        request,
        "run.html",
        run=run,
        prompt=slug,
        deployment_href=view(deployment).href if deployment else None,
        variant_href=variant_href(deployment, run.get("variant")),
        metadata=metadata,
        user_href=f"/users/{quote(run['end_user'], safe='')}" if run.get("end_user") else None,
        session_href=session_href(run.get("session_id")),
        deployment_logs="/logs?" + urlencode({"deployment": run["deployment"]}),
        can_give_feedback=role_allows(session.member.role, "editor"),
        as_json=as_json,
    )


def session_href(session_id: str | None) -> str | None:
    """A session's page (web/run_sessions_pages.py); None for a run without one."""
    return f"/sessions/{quote(session_id, safe='')}" if session_id else None


def variant_href(deployment: Deployment | None, variant: str | None) -> str | None:
    """A link to the run's variant on its deployment's page, only to a page that exists: a run
    records the variant that served, which may have been removed since: then the deployment's."""
    if deployment is None or not variant:
        return None
    shown = view(deployment)
    return next((row.href for row in shown.variants if row.name == variant), shown.href)


def as_json(value: Any) -> str:
    """A JSON value as indented text for a <pre> (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
