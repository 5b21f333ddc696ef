"""How UsageReport reads a grouped answer, on SQLite and PostgreSQL, against sums made here from
the runs themselves: the groups' series read in parts of the range at once (the parts' buckets
neither lost nor counted twice, whatever the number of buckets), the total's latency bins summed
from the groups' when every value is shown, and the `other` series when not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.latency_histogram import bin_of, percentile
from promptdeck.domain.runs import ERROR, SUCCESS, RunRecord, new_id
from promptdeck.domain.usage_query import UsageQuery, floor_to, parse_usage_query
from promptdeck.store.usage_report import UsageReport
from tests.support.run_records import usage_run, write_runs

START = datetime(2026, 3, 2, tzinfo=UTC)
DEPLOYMENTS = ("alpha", "beta", "gamma")


def runs_of(workspace_id: str) -> list[RunRecord]:
    """Runs over five days and a few hours, every hour of the first day-and-a-bit, with uneven
    traffic per deployment, latencies over several bins and some errors."""
    return [
        usage_run(
            workspace_id,
            created_at=START + timedelta(hours=i % 29 + (i % 5) * 24, minutes=i % 60),
            deployment=DEPLOYMENTS[(i * i) % 7 % 3],
            duration_ms=(3.0, 40.0, 250.0, 1800.0)[i % 4] * (1 + i % 7),
            status=ERROR if i % 11 == 0 else SUCCESS,
            input_tokens=i,
        )
        for i in range(240)
    ]


def expected(records: list[RunRecord], query: UsageQuery, belongs: Callable[[RunRecord], bool]) -> list[Any]:
    """Per bucket of the query: runs, errors, input tokens and p50/p95/p99 of the runs that
    belong, from the runs themselves."""
    points = []
    for start in query.bucket_starts():
        mine = [r for r in records if belongs(r) and floor_to(r.created_at, query.bucket) == start]
        bins: dict[int, int] = {}
        for r in mine:
            bins[bin_of(r.duration_ms)] = bins.get(bin_of(r.duration_ms), 0) + 1
        points.append(
            (
                len(mine),
                sum(r.status == ERROR for r in mine),
                sum(r.input_tokens for r in mine),
                *(percentile(bins, f) for f in (0.50, 0.95, 0.99)),
            )
        )
    return points


def busiest(records: list[RunRecord], query: UsageQuery) -> list[str]:
    """The deployments with runs in the query's range, most runs first (then by name)."""
    counts: dict[str, int] = {}
    for r in records:
        if query.start <= r.created_at < query.end:
            counts[r.deployment] = counts.get(r.deployment, 0) + 1
    return sorted(counts, key=lambda d: (-counts[d], d))


def deployed(name: str) -> Callable[[RunRecord], bool]:
    return lambda run: run.deployment == name


def observed(series: dict[str, Any]) -> list[Any]:
    fields = ("runs", "errors", "input_tokens", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    return [tuple(p[f] for f in fields) for p in series["points"]]


class Report:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.workspace_id = new_id()
        self.records = runs_of(self.workspace_id)

    async def write(self) -> None:
        await write_runs(self.engine, self.records)

    async def usage(self, **params: str) -> tuple[UsageQuery, dict[str, Any]]:
        query = parse_usage_query(
            start=params.pop("from"),
            end=params.pop("to"),
            bucket=params.pop("bucket"),
            group_by=params.pop("group_by", None),
            deployment=None,
            limit=params.pop("limit", None),
            percentiles=params.pop("percentiles", None),
            now=START + timedelta(days=30),
        )
        return query, await UsageReport(self.engine).usage(self.workspace_id, query)


@pytest_asyncio.fixture(loop_scope="session")
async def report(engine: AsyncEngine) -> Report:
    report = Report(engine)
    await report.write()
    return report


RANGES = {
    "five days": {"bucket": "day", "from": "2026-03-02", "to": "2026-03-07"},
    "25 hours": {"bucket": "hour", "from": "2026-03-02T03:00:00Z", "to": "2026-03-03T04:00:00Z"},
    "one hour": {"bucket": "hour", "from": "2026-03-02T05:00:00Z", "to": "2026-03-02T06:00:00Z"},
}


@pytest.mark.parametrize("span", list(RANGES))
async def test_every_deployment_shown_and_a_total_summed_from_them(report: Report, span: str) -> None:
    query, answer = await report.usage(**RANGES[span], group_by="deployment")
    assert [s["group"] for s in answer["series"]] == busiest(report.records, query)
    for series in answer["series"]:
        assert observed(series) == expected(report.records, query, deployed(series["group"]))
    assert observed(answer["total"]) == expected(report.records, query, lambda r: True)
    _, ungrouped = await report.usage(**RANGES[span])
    assert answer["total"] == ungrouped["total"]


@pytest.mark.parametrize("span", list(RANGES))
async def test_the_busiest_deployment_and_the_others(report: Report, span: str) -> None:
    query, answer = await report.usage(**RANGES[span], group_by="deployment", limit="1")
    first, *more = busiest(report.records, query)
    shown, other = answer["series"]
    assert (shown["group"], other["other"], bool(more)) == (first, True, True)
    assert observed(shown) == expected(report.records, query, deployed(first))
    assert observed(other) == expected(report.records, query, lambda r: not deployed(first)(r))
    assert observed(answer["total"]) == expected(report.records, query, lambda r: True)


async def test_percentiles_over_the_range_read_in_parts(report: Report) -> None:
    query, answer = await report.usage(**RANGES["five days"], group_by="deployment", percentiles="totals")
    for series in answer["series"]:
        mine = [
            r
            for r in report.records
            if r.deployment == series["group"] and query.start <= r.created_at < query.end
        ]
        bins: dict[int, int] = {}
        for r in mine:
            bins[bin_of(r.duration_ms)] = bins.get(bin_of(r.duration_ms), 0) + 1
        totals = series["totals"]
        assert totals["runs"] == len(mine)
        assert (totals["latency_p50_ms"], totals["latency_p95_ms"], totals["latency_p99_ms"]) == tuple(
            percentile(bins, f) for f in (0.50, 0.95, 0.99)
        )
        assert all(p["latency_p50_ms"] is None for p in series["points"])
    assert observed(answer["total"]) == expected(report.records, query, lambda r: True)
