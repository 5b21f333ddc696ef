"""The Users screens: the end users seen in runs (`end_user` as callers send it), and one end
user's totals and last 30 days.

Both read the `end_users` totals and the usage rollups through the same store functions as
`GET /api/users` and `GET /api/users/{end_user}` (never the runs table). Every figure links to
the logs filtered to that end user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from markupsafe import Markup

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.runs import utcnow
from promptdeck.domain.usage_dimensions import USER
from promptdeck.domain.usage_query import parse_usage_query
from promptdeck.store.console_sessions import Session
from promptdeck.web import charts
from promptdeck.web.charts import Chart, Series
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Member, services
from promptdeck.web.usage_pages import Card, logs_href, moment

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
SORTS = ("last_seen", "runs", "cost")  # what the end users' store can sort by (indexed or small)
DAY = timedelta(days=1)


def user_href(end_user: str) -> str:
    return "/users/" + quote(end_user, safe="")


def user_runs_href(end_user: str) -> str:
    """Every run of an end user in the logs (any time)."""
    return "/logs?" + urlencode({"user": end_user})


def users_url(**params: str) -> str:
    return "/users?" + urlencode({k: v for k, v in params.items() if v})


def user_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One end user as the table shows it, with its links."""
    runs = int(row.get("runs") or 0)
    errors = int(row.get("errors") or 0)
    return {
        "end_user": row["end_user"],
        "href": user_href(row["end_user"]),
        "runs_href": user_runs_href(row["end_user"]),
        "first_seen": moment(row["first_seen"]),
        "last_seen": moment(row["last_seen"]),
        "runs": runs,
        "errors": errors,
        "tokens": int(row.get("input_tokens") or 0) + int(row.get("output_tokens") or 0),
        "cost": float(row.get("cost") or 0),
        "error_rate": errors / runs if runs else 0.0,
    }


@router.get("/users")
async def users(request: Request, session: Session = Member) -> Response:
    params = request.query_params
    q = params.get("q", "").strip()
    sort = params.get("sort") or "last_seen"
    order = params.get("order") or "desc"
    cursor = params.get("cursor") or None
    end_users = services(request).end_users
    workspace_id = session.member.workspace_id
    error, status = None, 200
    try:
        found = await end_users.page(workspace_id, sort, order, q or None, PAGE_SIZE, cursor)
    except ValidationFailed as exc:
        error, status = exc.message, 422
        sort, order, cursor = "last_seen", "desc", None
        found = await end_users.page(workspace_id, sort, order, q or None, PAGE_SIZE)
    next_cursor = found.get("next_cursor")

    def sort_href(column: str) -> str:
        """A header's link: sort by it, busiest / newest first; again: the other way."""
        return users_url(q=q, sort=column, order="asc" if (sort, order) == (column, "desc") else "desc")

    return page(
        request,
        "users.html",
        status,
        error=error,
        rows=[user_row(r) for r in found["data"]],
        q=q,
        sort=sort,
        order=order,
        sorts=SORTS,
        sort_href=sort_href,
        next_href=users_url(q=q, sort=sort, order=order, cursor=next_cursor) if next_cursor else None,
        first_href=users_url(q=q, sort=sort, order=order) if cursor else None,
        fmt=charts.exact,
    )


def daily_charts(daily: Sequence[Mapping[str, Any]], end_user: str) -> list[tuple[Chart, Markup, list[Any]]]:
    """Runs (errors over them) and cost per day, each day a link to that day's runs."""
    starts = tuple(moment(d["t"]) for d in daily)
    links = tuple(logs_href({"user": end_user}, t, t + DAY) for t in starts)
    runs = tuple(float(d.get("runs") or 0) for d in daily)
    errors = tuple(float(d.get("errors") or 0) for d in daily)
    cost = tuple(float(d.get("cost") or 0) for d in daily)
    blue, orange = charts.PALETTE[0], charts.PALETTE[1]
    drawn = [
        (
            Chart(
                "Runs per day",
                "count",
                starts,
                DAY,
                (Series("runs", runs, blue),),
                overlay=Series("errors", errors, charts.ERROR_COLOR),
                column_hrefs=links,
            ),
            [("runs", blue, None), ("errors", charts.ERROR_COLOR, None)],
        ),
        (
            Chart(
                "Cost per day (USD)", "usd", starts, DAY, (Series("cost", cost, orange),), column_hrefs=links
            ),
            [("cost", orange, None)],
        ),
    ]
    return [(chart, charts.render_both(chart), legend) for chart, legend in drawn]


@router.get("/users/{end_user:path}")
async def end_user_page(end_user: str, request: Request, session: Session = Member) -> Response:
    """What `GET /api/users/{end_user}` answers, from the same store calls."""
    app = services(request)
    workspace_id = session.member.workspace_id
    found = await app.end_users.get(workspace_id, end_user)
    days = parse_usage_query(
        start=None, end=None, bucket="day", group_by=None, deployment=None, limit=None, now=utcnow()
    )
    daily = await app.usage.value_usage(workspace_id, days, USER, end_user)
    row = user_row(found)
    runs_href = user_runs_href(end_user)
    cards = [
        Card("Runs", charts.exact(row["runs"], "count"), runs_href),
        Card(
            "Errors",
            charts.exact(row["errors"], "count"),
            "/logs?" + urlencode({"user": end_user, "status": "error"}),
            f"{row['error_rate']:.1%} of runs" if row["runs"] else "",
        ),
        Card("Tokens", charts.exact(row["tokens"], "count"), runs_href),
        Card("Cost", charts.exact(row["cost"], "usd"), runs_href),
    ]
    return page(
        request,
        "user.html",
        user=row,
        cards=cards,
        charts=daily_charts(daily, end_user),
        runs_href=runs_href,
    )
