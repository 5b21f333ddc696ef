"""Usage rollups, read: series of points per hour or UTC day, for everything or per group,
with latency percentiles summed from the stored bins. The runs table is never read, so an
answer costs the same whether the range holds a thousand runs or a million.

A group_by shows its `limit` busiest values (by runs over the range); what the others add up
to is the `other` series — computed as the total minus the shown values, so the series always
add up to the total. For a metadata key the total is every run carrying the key (values past
the caps fall in `other`), and the runs without the key are one more series, group `null`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.latency_histogram import percentile
from promptdeck.domain.usage_dimensions import ALL, DEPLOYMENT, META_KEY, NONE, USER, VARIANT, VERSION
from promptdeck.domain.usage_query import UsageQuery
from promptdeck.store.tables import USAGE_COUNTERS, usage_latency_bins, usage_rollups

COUNTERS = len(USAGE_COUNTERS)
_AT = {name: position for position, name in enumerate(USAGE_COUNTERS)}
_FLOATS = {_AT[n] for n in ("cost", "latency_ms_sum", "ttft_ms_sum", "feedback_score_sum")}
UNBINNED = {USER}  # dimensions without latency bins (one row per end user and hour is enough)


@dataclass
class Tally:
    """Summed counters and latency bins of one bucket (or of a whole series)."""

    counters: list[float] = field(default_factory=lambda: [0] * COUNTERS)
    bins: dict[int, int] = field(default_factory=dict)

    def add(self, other: Tally, sign: int = 1) -> None:
        self.counters = [a + sign * b for a, b in zip(self.counters, other.counters, strict=True)]
        for index, count in other.bins.items():
            self.bins[index] = self.bins.get(index, 0) + sign * count

    def point(self, binned: bool) -> dict[str, Any]:
        """The answer's fields. Counts are whole numbers; means and percentiles are null when
        there is nothing to average; a difference below zero (float noise) is zero."""
        c = {
            name: (max(0.0, value) if position in _FLOATS else max(0, int(value)))
            for position, (name, value) in enumerate(zip(USAGE_COUNTERS, self.counters, strict=True))
        }
        runs = c["runs"]
        bins = {k: v for k, v in self.bins.items() if v > 0}
        return {
            "runs": runs,
            "errors": c["errors"],
            "error_rate": c["errors"] / runs if runs else None,
            "input_tokens": c["input_tokens"],
            "cached_input_tokens": c["cached_input_tokens"],
            "output_tokens": c["output_tokens"],
            "reasoning_tokens": c["reasoning_tokens"],
            "cost": c["cost"] if c["cost"] > 1e-12 else 0.0,
            "latency_mean_ms": round(c["latency_ms_sum"] / runs, 2) if runs else None,
            "latency_p50_ms": percentile(bins, 0.50) if binned else None,
            "latency_p95_ms": percentile(bins, 0.95) if binned else None,
            "latency_p99_ms": percentile(bins, 0.99) if binned else None,
            "ttft_mean_ms": round(c["ttft_ms_sum"] / c["ttft_count"], 2) if c["ttft_count"] else None,
            "feedback_count": c["feedback_count"],
            "feedback_mean": (
                c["feedback_score_sum"] / c["feedback_scored"] if c["feedback_scored"] else None
            ),
            "thumbs_up": c["thumbs_up"],
            "thumbs_down": c["thumbs_down"],
        }


Tallies = dict[datetime, Tally]  # bucket start -> tally


@dataclass
class Series:
    group: str | None
    tallies: Tallies
    binned: bool
    other: bool = False

    def minus(self, parts: Iterable[Series]) -> Tallies:
        left = {moment: _copy(tally) for moment, tally in self.tallies.items()}
        for part in parts:
            for moment, tally in part.tallies.items():
                left.setdefault(moment, Tally()).add(tally, -1)
        return left

    def is_empty(self) -> bool:
        """No runs and no feedback (differences of float sums leave noise in the others)."""
        runs, items = _AT["runs"], _AT["feedback_count"]
        return all(t.counters[runs] <= 0 and t.counters[items] <= 0 for t in self.tallies.values())

    def answer(self, starts: list[datetime]) -> dict[str, Any]:
        total = Tally()
        points = []
        for moment in starts:
            tally = self.tallies.get(moment, Tally())
            total.add(tally)
            points.append({"t": moment, **tally.point(self.binned)})
        return {
            "group": self.group,
            "other": self.other,
            "points": points,
            "totals": total.point(self.binned),
        }


def _copy(tally: Tally) -> Tally:
    return Tally(list(tally.counters), dict(tally.bins))


@lru_cache(maxsize=4096)
def _bucket_of(value: Any) -> datetime:
    """A bucket start as the database gives it back: a time, or (a SQLite day) its date text."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _bucket_column(table: sa.Table, bucket: str, dialect: str) -> Any:
    """The bucket a stored hour belongs to, in SQL (no bound parameters: it is also grouped by)."""
    column = table.c.bucket_start
    if bucket == "hour":
        return column
    if dialect == "postgresql":
        utc: Any = sa.literal_column("'UTC'")
        day: Any = sa.literal_column("'day'")
        return sa.func.date_trunc(day, sa.func.timezone(utc, column))
    return sa.func.substr(column, sa.literal_column("1"), sa.literal_column("10"))


class UsageReport:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def usage(self, workspace_id: str, query: UsageQuery) -> dict[str, Any]:
        """The answer of `GET /api/usage`."""
        dimension = query.dimension
        async with self.engine.connect() as conn:
            if dimension is None:
                series = [Series("all", (await self._total(conn, workspace_id, query)).tallies, binned=True)]
            else:
                series = await self._grouped(conn, workspace_id, query, dimension)
        starts = query.bucket_starts()
        return {
            "bucket": query.bucket,
            "from": query.start,
            "to": query.end,
            "group_by": query.group_by,
            "deployment": query.deployment,
            "series": [s.answer(starts) for s in series],
        }

    async def _total(self, conn: AsyncConnection, workspace_id: str, query: UsageQuery) -> Series:
        """Every run of the range (of the deployment asked for)."""
        dimension, value = (DEPLOYMENT, query.deployment) if query.deployment else (ALL, NONE)
        return (await self._series(conn, workspace_id, query, dimension, [value]))[value]

    async def _grouped(
        self, conn: AsyncConnection, workspace_id: str, query: UsageQuery, dimension: str
    ) -> list[Series]:
        binned = dimension not in UNBINNED
        values = await self._busiest(conn, workspace_id, query, dimension, query.limit + 1)
        found = await self._series(conn, workspace_id, query, dimension, values[: query.limit])
        shown = [Series(value or None, found[value].tallies, binned) for value in values[: query.limit]]
        key = query.metadata_key
        rest: list[Series] = []
        if key is not None:  # the runs carrying the key; those without it are a series of their own
            whole = (await self._series(conn, workspace_id, query, META_KEY, [key]))[key]
            rest.append(Series(None, (await self._total(conn, workspace_id, query)).minus([whole]), binned))
        elif len(values) > query.limit:
            whole = await self._total(conn, workspace_id, query)
        else:  # every value is shown
            return shown
        other = Series("other", whole.minus(shown), binned, other=True)
        return shown + [s for s in (other, *rest) if not s.is_empty()]

    async def _busiest(
        self, conn: AsyncConnection, workspace_id: str, query: UsageQuery, dimension: str, count: int
    ) -> list[str]:
        """The dimension's `count` values with the most runs in the range, busiest first."""
        runs = sa.func.sum(usage_rollups.c.runs).label("runs")
        ranked = (
            sa.select(usage_rollups.c.value, runs)
            .where(*self._where(usage_rollups, workspace_id, query, dimension))
            .group_by(usage_rollups.c.value)
            .order_by(runs.desc(), usage_rollups.c.value)
            .limit(count)
        )
        return [row.value for row in await conn.execute(ranked)]

    @staticmethod
    def _where(table: sa.Table, workspace_id: str, query: UsageQuery, dimension: str) -> list[Any]:
        conditions = [
            table.c.workspace_id == workspace_id,
            table.c.dimension == dimension,
            table.c.bucket_start >= query.start,
            table.c.bucket_start < query.end,
        ]
        if query.deployment is not None and dimension in (DEPLOYMENT, VARIANT, VERSION):
            if dimension == DEPLOYMENT:
                conditions.append(table.c.value == query.deployment)
            else:
                prefix = query.deployment + ("/" if dimension == VARIANT else "@v")
                conditions.append(sa.func.substr(table.c.value, 1, len(prefix)) == prefix)
        return conditions

    async def _series(
        self, conn: AsyncConnection, workspace_id: str, query: UsageQuery, dimension: str, values: list[str]
    ) -> dict[str, Series]:
        """Each value's tallies per bucket (buckets without runs are left out)."""
        binned = dimension not in UNBINNED
        found = {value: Series(value, {}, binned) for value in values}
        if not values:
            return found
        dialect = conn.dialect.name
        t = usage_rollups
        bucket = _bucket_column(t, query.bucket, dialect).label("bucket")
        where = [*self._where(t, workspace_id, query, dimension), t.c.value.in_(values)]
        sums = [sa.func.sum(t.c[name]) for name in USAGE_COUNTERS]
        for row in await conn.execute(
            sa.select(bucket, t.c.value, *sums).where(*where).group_by(bucket, t.c.value)
        ):
            tally = found[row[1]].tallies.setdefault(_bucket_of(row[0]), Tally())
            tally.counters = [float(v or 0) if i in _FLOATS else int(v or 0) for i, v in enumerate(row[2:])]
        if binned:
            b = usage_latency_bins
            bucket = _bucket_column(b, query.bucket, dialect).label("bucket")
            where = [*self._where(b, workspace_id, query, dimension), b.c.value.in_(values)]
            for row in await conn.execute(
                sa.select(bucket, b.c.value, b.c.bin, sa.func.sum(b.c.runs))
                .where(*where)
                .group_by(bucket, b.c.value, b.c.bin)
            ):
                tally = found[row[1]].tallies.setdefault(_bucket_of(row[0]), Tally())
                tally.bins[int(row[2])] = int(row[3])
        return found

    async def value_usage(
        self, workspace_id: str, query: UsageQuery, dimension: str, value: str
    ) -> list[dict[str, Any]]:
        """One value's points (e.g. an end user's days), empty buckets included."""
        async with self.engine.connect() as conn:
            found = await self._series(conn, workspace_id, query, dimension, [value])
        return list(found[value].answer(query.bucket_starts())["points"])
