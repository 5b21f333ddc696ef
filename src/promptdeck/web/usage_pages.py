"""The Usage screen: runs, tokens, cost and latency percentiles over time, by deployment, model,
variant, version, provider, end user or a metadata key.

The page reads the usage rollups through the same store function as `GET /api/usage` (never the
runs table) and draws its charts as SVG on the server (web/charts.py). Every bar, total and
group links to the logs filtered to the runs behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from markupsafe import Markup

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.run_filters import parse_time
from promptdeck.domain.usage_query import BUCKET_SIZES as BUCKETS
from promptdeck.domain.usage_query import META_GROUP, UsageQuery, floor_to, parse_usage_query
from promptdeck.store.console_sessions import Session
from promptdeck.web import charts
from promptdeck.web.charts import Chart, Series
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Member, services

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# range name -> (length, default bucket)
RANGES: dict[str, tuple[timedelta, str]] = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}
RANGE_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "custom": "Custom"}
GROUPS = {
    "deployment": "Deployment",
    "model": "Model",
    "variant": "Variant",
    "version": "Version",
    "provider": "Provider",
    "user": "End user",
}
MAX_HOURLY = timedelta(days=7)  # past this, an hour is under 3 px wide: days read better
GROUP_LIMIT = 8  # series drawn; the rest are summed as "other" by the API
OTHER_COLOR = "#b7bcc4"
UNKNOWN = "unknown"  # the label of runs naming no existing deployment (a caller's typo)
Legend = list[tuple[str, str, str | None]]  # (label, colour, link to its runs)


@dataclass(frozen=True)
class UsageView:
    """What the controls ask for: a named range and the API's query it stands for."""

    range: str
    query: UsageQuery

    @property
    def since(self) -> datetime:
        return self.query.start

    @property
    def until(self) -> datetime:
        return self.query.end

    @property
    def bucket(self) -> str:
        return self.query.bucket

    @property
    def group_by(self) -> str:
        return self.query.group_by or "deployment"

    @property
    def last_day(self) -> date:
        """The last day the range covers (what the "to" date field shows)."""
        return (self.until - timedelta(microseconds=1)).date()


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationFailed(f"{name}: expected a date like 2026-03-01; got {text!r}") from None


def parse_view(params: Mapping[str, str], now: datetime) -> UsageView:
    """The view the controls ask for (default: the last 24 hours by deployment). The console's
    own words (a named range, whole days, a typed metadata key) become `GET /api/usage`'s
    parameters, checked by the same parser; every problem is named at once."""
    problems = []
    range_name = params.get("range") or "24h"
    bucket = params.get("bucket") or ""
    group_by = (params.get("group_by") or "deployment").strip()
    if group_by == "metadata":  # "metadata key…" chosen: the key is typed in its own field
        group_by = META_GROUP + (params.get("meta_key") or "").strip()
        if group_by == META_GROUP:
            problems.append("meta_key: type the metadata key to group by")
    start = end = None
    if range_name in RANGES:
        length, default_bucket = RANGES[range_name]
        bucket = bucket or default_bucket
        # up to the end of the current hour or day
        last = floor_to(now, "day" if bucket == "day" else "hour") + BUCKETS.get(bucket, timedelta(hours=1))
        start, end = iso(last - length), iso(last)
    elif range_name == "custom":
        try:
            first = _day(params.get("from") or "", "from")
            through = _day(params.get("to") or "", "to")
            start = iso(datetime.combine(first, time(), UTC))
            end = iso(datetime.combine(through + timedelta(days=1), time(), UTC))
            if through < first:
                problems.append("to: must not be before from")
        except ValidationFailed as exc:
            problems.append(exc.message)
        except OverflowError:  # the day after 9999-12-31
            problems.append("to: must be before 9999-12-31")
        short = start and end and parse_time(end) - parse_time(start) <= timedelta(days=2)
        bucket = bucket or ("hour" if short else "day")
    else:
        problems.append(f"range: expected one of {', '.join([*RANGES, 'custom'])}; got {range_name!r}")
    if bucket == "hour" and start and end and parse_time(end) - parse_time(start) > MAX_HOURLY:
        problems.append(
            f"bucket: hours are drawn over at most {MAX_HOURLY.days} days "
            f"({MAX_HOURLY // BUCKETS['hour']} bars); use bucket=day for a longer range"
        )
    try:
        query = parse_usage_query(
            start=start,
            end=end,
            bucket=bucket,
            group_by=group_by,
            deployment=None,
            limit=str(GROUP_LIMIT),
            now=now,
        )
    except ValidationFailed as exc:
        said = {p.split(":", 1)[0] for p in problems}  # one message per parameter
        problems.extend(p for p in exc.details or [exc.message] if p.split(":", 1)[0] not in said)
    if problems:
        raise ValidationFailed("; ".join(problems), details=problems)
    return UsageView(range_name, query)


def period_label(since: datetime, until: datetime) -> str:
    """ "Mar 3 14:00 - Mar 4 14:00 UTC", or "Mar 1 - Mar 30" for whole days (the last included)."""
    if since.time() == time() and until.time() == time():
        last = until - timedelta(days=1)
        return f"{since:%b} {since.day} - {last:%b} {last.day}, {last.year}"
    return f"{since:%b} {since.day} {since:%H:%M} - {until:%b} {until.day} {until:%H:%M} UTC"


# --- links to the logs ------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """UTC, to the second, with four-digit years (strftime writes year 1 as "1")."""
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def logs_href(filters: Mapping[str, str], since: datetime, until: datetime) -> str:
    """The logs page showing the runs behind a number: these filters, in [since, until) (the
    parameters of web/logs_pages.py's LogQuery)."""
    chosen = urlencode({k: v for k, v in filters.items() if v})
    return f"/logs?{chosen}&{_window(since, until)}" if chosen else f"/logs?{_window(since, until)}"


@lru_cache(maxsize=4096)
def _window(since: datetime, until: datetime) -> str:
    """A time range in the logs' parameters (cached: every group of a bucket shares it)."""
    return urlencode({"range": "custom", "since": iso(since), "until": iso(until)})


def group_filters(group_by: str, value: str) -> dict[str, str]:
    """The logs filters that select one group's runs ("" for runs without a value selects
    nothing narrower than the range)."""
    if not value:
        return {}
    if group_by == "variant" and "/" in value:
        deployment, variant = value.split("/", 1)
        return {"deployment": deployment, "variant": variant}
    if group_by == "version" and "@v" in value:
        deployment, version = value.rsplit("@v", 1)
        return {"deployment": deployment, "version": version}
    if group_by == "user":
        return {"user": value}
    if group_by.startswith(META_GROUP):
        return {"meta": f"{group_by[len(META_GROUP) :]}={value}"}
    return {group_by: value}


# --- from the API's answer to charts -----------------------------------------------------------


def moment(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Group:
    """One series of the answer, ready for the page."""

    label: str
    value: str
    color: str
    points: Sequence[Mapping[str, Any]]
    totals: Mapping[str, Any]
    filters: dict[str, str]
    href: str | None  # its runs in the logs (None: no filter selects them)


def groups_of(report: Mapping[str, Any], group_by: str, since: datetime, until: datetime) -> list[Group]:
    """The answer's series as groups: `other` (the values past the limit) in grey, last; a
    null group is the runs without a value (for a metadata key: without the key; by deployment:
    the runs of names that are no deployment, `UNKNOWN`)."""
    out = []
    for index, series in enumerate(report.get("series") or ()):
        value = str(series.get("group") or "")
        if series.get("other"):
            label, shade, filters = "other", OTHER_COLOR, {}
        elif group_by == "deployment" and not value:
            totals = series.get("totals") or {}
            out.append(Group(UNKNOWN, "", charts.color(index), series["points"], totals, {}, None))
            continue
        else:
            key = group_by.removeprefix(META_GROUP) if group_by.startswith(META_GROUP) else ""
            label = value or (f"(no {key})" if key else "(none)")
            shade, filters = charts.color(index), group_filters(group_by, value)
        totals = series.get("totals") or {}
        out.append(
            Group(label, value, shade, series["points"], totals, filters, logs_href(filters, since, until))
        )
    return out


def _values(points: Sequence[Mapping[str, Any]], field: str) -> tuple[float | None, ...]:
    return tuple(None if p.get(field) is None else float(p[field]) for p in points)


def build_charts(
    grouped: list[Group], overall: Mapping[str, Any], starts: tuple[datetime, ...], bucket: timedelta
) -> list[tuple[Chart, Legend]]:
    """The four charts, each with its legend: (label, colour, link)."""
    points = overall["points"]
    column = tuple(logs_href({}, t, t + bucket) for t in starts)

    linked = len(starts) <= charts.LINKED_MARKS_MAX  # else segments are drawn without links
    hrefs = {
        g.label: tuple(logs_href(g.filters, t, t + bucket) for t in starts) if linked and g.href else ()
        for g in grouped
    }

    def per_group(field: str) -> tuple[Series, ...]:
        return tuple(Series(g.label, _values(g.points, field), g.color, hrefs[g.label]) for g in grouped)

    errors = Series("errors", _values(points, "errors"), charts.ERROR_COLOR)
    runs = Chart("Runs", "count", starts, bucket, per_group("runs"), overlay=errors, column_hrefs=column)
    # With runs in the range, an empty chart says what it lacks, not that there are no runs.
    cost = Chart(
        "Cost (USD)",
        "usd",
        starts,
        bucket,
        per_group("cost"),
        column_hrefs=column,
        empty_text="These runs cost $0 (free or unpriced models)",
    )
    uncached = tuple(
        None
        if p.get("input_tokens") is None
        else float(p["input_tokens"] - (p.get("cached_input_tokens") or 0))
        for p in points
    )
    answered = tuple(
        None
        if p.get("output_tokens") is None
        else float(p["output_tokens"] - (p.get("reasoning_tokens") or 0))
        for p in points
    )
    tokens = Chart(
        "Tokens",
        "tokens",
        starts,
        bucket,
        (
            Series("input", uncached, charts.PALETTE[0]),
            Series("cached input", _values(points, "cached_input_tokens"), charts.PALETTE[4]),
            Series("output", answered, charts.PALETTE[1]),
            Series("reasoning", _values(points, "reasoning_tokens"), charts.PALETTE[3]),
        ),
        column_hrefs=column,
        empty_text="These runs used no tokens",
    )
    latency = Chart(
        "Latency",
        "ms",
        starts,
        bucket,
        (
            Series("p50", _values(points, "latency_p50_ms"), charts.PALETTE[2]),
            Series("p95", _values(points, "latency_p95_ms"), charts.PALETTE[1]),
            Series("p99", _values(points, "latency_p99_ms"), charts.PALETTE[3]),
        ),
        style="lines",
        column_hrefs=column,
    )
    group_legend: Legend = [(g.label, g.color, g.href) for g in grouped]
    return [
        (runs, [*group_legend, ("errors", charts.ERROR_COLOR, None)]),
        (tokens, [(s.label, s.color, None) for s in tokens.series]),
        (cost, group_legend),
        (latency, [(s.label, s.color, None) for s in latency.series]),
    ]


@dataclass(frozen=True)
class Card:
    label: str
    value: str
    href: str
    note: str = ""


def total_cards(totals: Mapping[str, Any], since: datetime, until: datetime) -> list[Card]:
    runs = int(totals.get("runs") or 0)
    errors = int(totals.get("errors") or 0)
    rate = f"{errors / runs:.1%} of runs" if runs else ""
    tokens = int(totals.get("input_tokens") or 0) + int(totals.get("output_tokens") or 0)
    every = logs_href({}, since, until)
    return [
        Card("Runs", charts.exact(runs, "count"), every),
        Card("Errors", charts.exact(errors, "count"), logs_href({"status": "error"}, since, until), rate),
        Card(
            "Tokens",
            charts.exact(tokens, "count"),
            every,
            f"{charts.exact(totals.get('input_tokens') or 0, 'count')} in · "
            f"{charts.exact(totals.get('output_tokens') or 0, 'count')} out",
        ),
        Card("Cost", charts.exact(float(totals.get("cost") or 0), "usd"), every),
        Card(
            "Latency p50",
            charts.exact(totals.get("latency_p50_ms"), "ms"),
            every,
            f"p95 {charts.exact(totals.get('latency_p95_ms'), 'ms')} · "
            f"p99 {charts.exact(totals.get('latency_p99_ms'), 'ms')}",
        ),
    ]


async def usage_report(request: Request, workspace_id: str, view: UsageView) -> dict[str, Any]:
    """The answer of `GET /api/usage` for this view: the groups, and every run as its `total`.
    The groups' percentiles are shown over the range only (the table), never per bucket, so
    they are asked for as totals; the latency chart draws the total's per bucket. By deployment,
    names that are no deployment (typos callers sent) are one group, never one each."""
    query = replace(view.query, percentiles="totals")
    return await services(request).usage.usage(workspace_id, query, known_deployments_only=True)


@router.get("/usage")
async def usage(request: Request, session: Session = Member) -> Response:
    now = datetime.now(UTC)
    try:
        view = parse_view(request.query_params, now)
    except ValidationFailed as exc:
        view = parse_view({}, now)
        return await render_usage(request, session, view, status=422, error=exc.message)
    return await render_usage(request, session, view)


async def render_usage(
    request: Request, session: Session, view: UsageView, status: int = 200, error: str | None = None
) -> Response:
    report = await usage_report(request, session.member.workspace_id, view)
    bucket = BUCKETS[view.bucket]
    overall = report.get("total")
    points = overall["points"] if overall else []
    starts = tuple(moment(p["t"]) for p in points)
    totals = overall.get("totals", {}) if overall else {}
    grouped = groups_of(report, view.group_by, view.since, view.until)
    drawn = build_charts(grouped, overall, starts, bucket) if overall else []
    return page(
        request,
        "usage.html",
        status,
        error=error,
        query=view,
        ranges=RANGE_LABELS,
        groups=GROUPS,
        meta_key=view.group_by[len(META_GROUP) :] if view.group_by.startswith(META_GROUP) else "",
        meta_keys=[],
        fmt=charts.exact,
        cards=total_cards(totals, view.since, view.until),
        charts=[(chart, Markup(charts.render_both(chart)), legend) for chart, legend in drawn],
        empty=not int(totals.get("runs") or 0),
        grouped=grouped,
        group_label=GROUPS.get(view.group_by, view.group_by),
        period=period_label(view.since, view.until),
        since=view.since,
        until=view.until,
    )
