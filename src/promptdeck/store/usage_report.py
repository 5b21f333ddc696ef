"""Usage rollups, read: series of points per hour or UTC day, for everything or per group,
with latency percentiles summed from the stored bins. The runs table is never read, so an
answer costs the same whether the range holds a thousand runs or a million.

A group_by shows its `limit` busiest values (by runs over the range); what the others add up
to is the `other` series — computed as the total minus the shown values, so the series always
add up to the total. For a metadata key the total is every run carrying the key (values past
the caps fall in `other`), and the runs without the key are one more series, group `null`.
The total of every run is in the answer too (`total`), so a chart of the whole and one of the
groups cost one request. It is read on a connection of its own while the groups are read; when
the groups shown are every value of a dimension that gives each run one value (deployment,
variant, version, model, provider), only its counters are, its latency bins being the sums of
the groups' (most of a grouped answer's rows are the groups' bins, so they are not read twice).
The groups' series are read in SLICES parts of the range at once, on connections of their own.

With `percentiles=totals` the groups' latency bins are summed over the range in SQL (one row
per value and bin instead of one per value, bucket and bin): a group then has percentiles in
its totals only, which is what a table of groups shows.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from itertools import accumulate, pairwise
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.latency_histogram import LAST, bin_value
from promptdeck.domain.usage_dimensions import (
    ALL,
    DEPLOYMENT,
    META_KEY,
    MODEL,
    NONE,
    PROVIDER,
    USER,
    VARIANT,
    VERSION,
)
from promptdeck.domain.usage_query import UsageQuery
from promptdeck.store.database import set_locally
from promptdeck.store.tables import USAGE_COUNTERS, usage_latency_bins, usage_rollups

COUNTERS = len(USAGE_COUNTERS)
_AT = {name: position for position, name in enumerate(USAGE_COUNTERS)}
_FLOATS = {_AT[n] for n in ("cost", "latency_ms_sum", "ttft_ms_sum", "feedback_score_sum")}
# How each summed counter comes back as a number (a sum over no rows is NULL).
_NUMBER = tuple(float if position in _FLOATS else int for position in range(COUNTERS))
_RUNS, _FEEDBACK = _AT["runs"], _AT["feedback_count"]
UNBINNED = {USER}  # dimensions without latency bins (one row per end user and hour is enough)
# Dimensions in which every run has exactly one value (and bins): their values add up to `all`.
PARTITIONING = {DEPLOYMENT, VARIANT, VERSION, MODEL, PROVIDER}

Bins = dict[int, int]  # latency bin -> runs
SLICES = 2  # the groups' series are read in this many parts of the range at once (_sliced)


@dataclass
class Tally:
    """Summed counters and latency bins of one bucket (or of a whole series)."""

    counters: list[float] = field(default_factory=lambda: [0] * COUNTERS)
    bins: Bins = field(default_factory=dict)

    def point(self, binned: bool) -> dict[str, Any]:
        """The answer's fields. Counts are whole numbers; means and percentiles are null when
        there is nothing to average; a difference below zero (float noise) is zero."""
        numbers = [n(v) if v > 0 else n(0) for n, v in zip(_NUMBER, self.counters, strict=True)]
        c = dict(zip(USAGE_COUNTERS, numbers, strict=True))
        runs = c["runs"]
        p50, p95, p99 = _percentiles(self.bins) if binned else (None, None, None)
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
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
            "ttft_mean_ms": round(c["ttft_ms_sum"] / c["ttft_count"], 2) if c["ttft_count"] else None,
            "feedback_count": c["feedback_count"],
            "feedback_mean": (
                c["feedback_score_sum"] / c["feedback_scored"] if c["feedback_scored"] else None
            ),
            "thumbs_up": c["thumbs_up"],
            "thumbs_down": c["thumbs_down"],
        }


_FRACTIONS = (0.50, 0.95, 0.99)
_BIN_VALUES = [round(bin_value(index), 2) for index in range(LAST + 1)]


def _percentiles(bins: Bins) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 at once, by latency_histogram.percentile's rule (nearest rank,
    reported as the bin's value rounded to 0.01 ms): a point asks for all three."""
    counted = sorted(item for item in bins.items() if item[1] > 0)
    if not counted:
        return None, None, None
    seen = list(accumulate(count for _, count in counted))
    total = seen[-1]
    p50, p95, p99 = (
        _BIN_VALUES[counted[bisect_left(seen, max(1, math.ceil(f * total)))][0]] for f in _FRACTIONS
    )
    return p50, p95, p99


Tallies = dict[datetime, Tally]  # bucket start -> tally
EMPTY = Tally()


def _add_bins(into: Bins, bins: Bins, sign: int = 1) -> None:
    for index, count in bins.items():
        into[index] = into.get(index, 0) + sign * count


@dataclass
class Series:
    group: str | None
    tallies: Tallies
    binned: bool
    other: bool = False
    # The bins of the whole range when they were read per range only (percentiles=totals):
    # the points then have no percentiles, and the tallies no bins.
    range_bins: Bins | None = None

    def whole_bins(self) -> Bins:
        """The latency bins of the whole range (a new dict)."""
        if self.range_bins is not None:
            return dict(self.range_bins)
        summed: Bins = {}
        for tally in self.tallies.values():
            _add_bins(summed, tally.bins)
        return summed

    def minus(self, group: str | None, parts: Iterable[Series], other: bool = False) -> Series:
        """What is left of this series once the parts are taken out, bucket by bucket; with
        the bins of the range only if any side has only those."""
        parts = list(parts)
        per_range = self.range_bins is not None or any(p.range_bins is not None for p in parts)
        left = {
            moment: Tally(list(tally.counters), {} if per_range else dict(tally.bins))
            for moment, tally in self.tallies.items()
        }
        for part in parts:
            for moment, tally in part.tallies.items():
                mine = left.get(moment)
                if mine is None:
                    left[moment] = mine = Tally()
                mine.counters = [a - b for a, b in zip(mine.counters, tally.counters, strict=True)]
                if not per_range:
                    _add_bins(mine.bins, tally.bins, -1)
        range_bins = None
        if per_range:
            range_bins = self.whole_bins()
            for part in parts:
                _add_bins(range_bins, part.whole_bins(), -1)
        return Series(group, left, self.binned, other, range_bins)

    def add_bins_of(self, parts: Iterable[Series]) -> None:
        """Add the parts' latency bins to this series', bucket by bucket."""
        for part in parts:
            for moment, tally in part.tallies.items():
                mine = self.tallies.get(moment)
                if mine is None:
                    self.tallies[moment] = mine = Tally()
                _add_bins(mine.bins, tally.bins)

    def add(self, later: Series) -> None:
        """Take in the series of a later, disjoint part of the range (its own buckets)."""
        self.tallies.update(later.tallies)
        if later.range_bins is not None:
            if self.range_bins is None:
                self.range_bins = {}
            _add_bins(self.range_bins, later.range_bins)

    def is_empty(self) -> bool:
        """No runs and no feedback (differences of float sums leave noise in the others)."""
        return all(t.counters[_RUNS] <= 0 and t.counters[_FEEDBACK] <= 0 for t in self.tallies.values())

    def answer(self, starts: list[datetime]) -> dict[str, Any]:
        per_point = self.binned and self.range_bins is None
        blank = EMPTY.point(per_point)  # the fields of every bucket without runs
        sums: list[float] = [0] * COUNTERS
        points = []
        for moment in starts:
            tally = self.tallies.get(moment)
            if tally is None:
                points.append({"t": moment, **blank})
                continue
            sums = [a + b for a, b in zip(sums, tally.counters, strict=True)]
            points.append({"t": moment, **tally.point(per_point)})
        return {
            "group": self.group,
            "other": self.other,
            "points": points,
            "totals": Tally(sums, self.whole_bins()).point(self.binned),
        }


@lru_cache(maxsize=4096)
def _bucket_of(value: Any) -> datetime:
    """A bucket start as the database gives it back: a time, or (SQLite) its text."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _bucket_column(table: sa.Table, bucket: str, dialect: Dialect) -> Any:
    """The bucket a stored hour belongs to, in SQL (no bound parameters: it is also grouped by).
    SQLite's stay text, turned into times once per bucket by `_bucket_of`, not once per row.
    PostgreSQL 14+ bins the stored instant into UTC days (date_bin: integer arithmetic, a tenth
    faster over a month of latency bins than truncating the time converted to UTC)."""
    column = table.c.bucket_start
    if dialect.name == "postgresql":
        if bucket == "hour":
            return column
        if (dialect.server_version_info or (0,)) >= (14,):
            day: Any = sa.literal_column("interval '1 day'")
            return sa.func.date_bin(day, column, sa.literal_column("timestamptz '2000-01-01 00:00:00+00'"))
        utc: Any = sa.literal_column("'UTC'")
        return sa.func.date_trunc(sa.literal_column("'day'"), sa.func.timezone(utc, column))
    if bucket == "hour":
        return sa.type_coerce(column, sa.String())
    return sa.func.substr(column, sa.literal_column("1"), sa.literal_column("10"))


def _sum(column: sa.Column[Any]) -> Any:
    """A column's sum; a whole number's as a bigint, not as PostgreSQL's numeric, which the
    driver would turn into a Decimal per row (a month of latency bins by day: ~13,000 rows)."""
    summed = sa.func.sum(column)
    return sa.cast(summed, sa.BigInteger) if isinstance(column.type, sa.Integer) else summed


async def _plan_settings(conn: AsyncConnection) -> None:
    """PostgreSQL settings for this transaction's statements. Plans made for the actual values
    (a generic plan, which the driver's prepared statements get after five runs, reads a list of
    values by walking the range once per value); the grouping hashed in memory (a month of
    latency bins by day is ~13,000 groups of ~135,000 rows: sorting them spilled to disk); no
    parallel workers (an answer is already read on up to three connections at once) and no JIT
    (compiling costs more than these statements take)."""
    if conn.dialect.name == "postgresql":
        await set_locally(
            conn,
            plan_cache_mode="force_custom_plan",
            work_mem="32MB",
            max_parallel_workers_per_gather="0",
            jit="off",
        )


class UsageReport:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def usage(self, workspace_id: str, query: UsageQuery) -> dict[str, Any]:
        """The answer of `GET /api/usage`."""
        dimension = query.dimension
        starts = query.bucket_starts()
        if dimension is None:
            async with self.engine.connect() as conn:
                total = await self._total(conn, workspace_id, query)
            series = [total]
        else:
            total, series = await self._grouped(workspace_id, query, dimension)
        whole = total.answer(starts)
        return {
            "bucket": query.bucket,
            "from": query.start,
            "to": query.end,
            "group_by": query.group_by,
            "deployment": query.deployment,
            "percentiles": query.percentiles,
            "series": [whole] if dimension is None else [s.answer(starts) for s in series],
            "total": whole,
        }

    async def _total(
        self, conn: AsyncConnection, workspace_id: str, query: UsageQuery, with_bins: bool = True
    ) -> Series:
        """Every run of the range (of the deployment asked for), percentiles per point (from
        bins read here, or `with_bins` False, added later)."""
        await _plan_settings(conn)
        dimension, value = (DEPLOYMENT, query.deployment) if query.deployment else (ALL, NONE)
        found = await self._series(
            conn, workspace_id, query, dimension, [value], every_value=True, with_bins=with_bins
        )
        return Series("all", found[value].tallies, binned=True)

    async def _grouped(
        self, workspace_id: str, query: UsageQuery, dimension: str
    ) -> tuple[Series, list[Series]]:
        """The total and the groups' series, the total read on a connection of its own while the
        busiest values and their series are. When those values turn out to be every value of a
        dimension that gives each run one value, the total's latency bins are the sums of
        theirs (whole numbers: exactly those of `all`), so only its counters are read."""
        per_point = query.percentiles == "points"
        key = query.metadata_key
        may_sum = (
            per_point  # the total's points need the groups' bins per point
            and dimension in PARTITIONING
            and (query.deployment is None or dimension == DEPLOYMENT)
        )

        async def total(with_bins: bool) -> Series:
            async with self.engine.connect() as conn:
                return await self._total(conn, workspace_id, query, with_bins)

        try:
            async with asyncio.TaskGroup() as tasks:
                reading = tasks.create_task(total(with_bins=not may_sum))
                async with self.engine.connect() as conn:
                    await _plan_settings(conn)
                    values = await self._busiest(conn, workspace_id, query, dimension, query.limit + 1)
                names, more = values[: query.limit], len(values) > query.limit
                if may_sum and more:  # the total's bins are needed after all (its counters again)
                    reading = tasks.create_task(total(with_bins=True))
                found = await self._sliced(workspace_id, query, dimension, names, per_point, not more)
                shown = [found[name] for name in names]
                carrying = None
                if key is not None:
                    carrying = (await self._sliced(workspace_id, query, META_KEY, [key], per_point))[key]
        except ExceptionGroup as failed:  # the first failure as itself, as from one statement
            raise failed.exceptions[0] from failed
        whole = reading.result()
        if may_sum and not more:
            whole.add_bins_of(shown)
        rest: list[Series] = []
        if carrying is not None:  # the runs carrying the key; those without it are a series of their own
            rest.append(whole.minus(None, [carrying]))
            folded = carrying
        elif more:
            folded = whole
        else:  # every value is shown
            return whole, shown
        other = folded.minus("other", shown, other=True)
        return whole, shown + [s for s in (other, *rest) if not s.is_empty()]

    async def _sliced(
        self,
        workspace_id: str,
        query: UsageQuery,
        dimension: str,
        values: list[str],
        per_point: bool,
        every_value: bool = False,
    ) -> dict[str, Series]:
        """`_series`, read in SLICES consecutive parts of the range at once, each on a connection
        of its own: the groups' latency bins are most of a grouped answer's work (a month by
        deployment is ~135,000 rows, summed into ~13,000), and one statement uses one core."""
        starts = query.bucket_starts()
        cuts = [starts[len(starts) * i // SLICES] for i in range(SLICES)] + [query.end]
        parts = [replace(query, start=a, end=b) for a, b in pairwise(cuts) if a < b]

        async def read(part: UsageQuery) -> dict[str, Series]:
            async with self.engine.connect() as conn:
                await _plan_settings(conn)
                return await self._series(conn, workspace_id, part, dimension, values, per_point, every_value)

        found, *more = await asyncio.gather(*(read(part) for part in parts))
        for part in more:
            for value, series in part.items():
                found[value].add(series)
        return found

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
        self,
        conn: AsyncConnection,
        workspace_id: str,
        query: UsageQuery,
        dimension: str,
        values: list[str],
        per_point: bool = True,
        every_value: bool = False,
        with_bins: bool = True,
    ) -> dict[str, Series]:
        """Each value's tallies per bucket (buckets without runs are left out), with its latency
        bins per bucket, or (per_point False) summed over the range, or (with_bins False) none.
        `every_value`: the values are all the dimension has in the range, so the statements need
        not name them (PostgreSQL filters every row by a list of values, or with a generic plan
        walks the range once per value); rows of a value that appeared since are left out."""
        binned = dimension not in UNBINNED
        found = {value: Series(value or None, {}, binned) for value in values}
        if not values:
            return found
        dialect = conn.dialect
        t = usage_rollups
        bucket = _bucket_column(t, query.bucket, dialect).label("bucket")
        where = self._where(t, workspace_id, query, dimension)
        if not every_value:
            where.append(t.c.value.in_(values))
        sums = [_sum(t.c[name]) for name in USAGE_COUNTERS]
        select = sa.select(bucket, t.c.value, *sums).where(*where).group_by(bucket, t.c.value)
        for row in (await conn.execute(select)).all():
            series = found.get(row[1])
            if series is not None:
                series.tallies[_bucket_of(row[0])] = Tally(
                    [number(v or 0) for number, v in zip(_NUMBER, row[2:], strict=True)]
                )
        if not binned or not with_bins:
            return found
        b = usage_latency_bins
        where = self._where(b, workspace_id, query, dimension)
        if not every_value:
            where.append(b.c.value.in_(values))
        runs = _sum(b.c.runs)
        if per_point:
            bucket = _bucket_column(b, query.bucket, dialect).label("bucket")
            rows = await conn.execute(
                sa.select(bucket, b.c.value, b.c.bin, runs).where(*where).group_by(bucket, b.c.value, b.c.bin)
            )
            cells: dict[tuple[Any, str], Bins] = {}  # (bucket as read, value) -> bins
            for moment, value, index, count in rows.all():
                bins = cells.get((moment, value))
                if bins is None:
                    cells[moment, value] = bins = {}
                bins[index] = count
            for (moment, value), bins in cells.items():
                series = found.get(value)
                if series is None:
                    continue
                start = _bucket_of(moment)
                tally = series.tallies.get(start)
                if tally is None:
                    series.tallies[start] = tally = Tally()
                tally.bins = bins
        else:
            ranged: dict[str, Bins] = {value: {} for value in values}
            rows = await conn.execute(
                sa.select(b.c.value, b.c.bin, runs).where(*where).group_by(b.c.value, b.c.bin)
            )
            for value, index, count in rows:
                if value in ranged:
                    ranged[value][index] = count
            for value, bins in ranged.items():
                found[value].range_bins = bins
        return found

    async def value_usage(
        self, workspace_id: str, query: UsageQuery, dimension: str, value: str
    ) -> list[dict[str, Any]]:
        """One value's points (e.g. an end user's days), empty buckets included."""
        async with self.engine.connect() as conn:
            found = await self._series(conn, workspace_id, query, dimension, [value])
        return list(found[value].answer(query.bucket_starts())["points"])
