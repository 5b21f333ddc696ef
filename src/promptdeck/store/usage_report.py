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

With `known_deployments_only` (the console), a grouping by deployment shows only names of
deployments that exist: the runs of any other name a caller sent (a typo, a deleted deployment)
are one series, group `null`, never ranked among the busiest.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
from promptdeck.store.tables import USAGE_COUNTERS, deployments, usage_latency_bins, usage_rollups
from promptdeck.store.usage_tally import (
    COUNTER_TYPES,
    Bins,
    Series,
    Tally,
)

UNBINNED = {USER}  # dimensions without latency bins (one row per end user and hour is enough)
# Dimensions in which every run has exactly one value (and bins): their values add up to `all`.
PARTITIONING = {DEPLOYMENT, VARIANT, VERSION, MODEL, PROVIDER}

SLICES = 2  # the groups' series are read in this many parts of the range at once (_sliced)


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

    async def usage(
        self, workspace_id: str, query: UsageQuery, known_deployments_only: bool = False
    ) -> dict[str, Any]:
        """The answer of `GET /api/usage`; `known_deployments_only`: see the module's note."""
        dimension = query.dimension
        starts = query.bucket_starts()
        if dimension is None:
            async with self.engine.connect() as conn:
                total = await self._total(conn, workspace_id, query)
            series = [total]
        else:
            fold = known_deployments_only and dimension == DEPLOYMENT and query.deployment is None
            total, series = await self._grouped(workspace_id, query, dimension, fold)
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
        self, workspace_id: str, query: UsageQuery, dimension: str, fold_unknown: bool = False
    ) -> tuple[Series, list[Series]]:
        """The total and the groups' series, the total read on a connection of its own while the
        busiest values and their series are. When those values turn out to be every value of a
        dimension that gives each run one value, the total's latency bins are the sums of
        theirs (whole numbers: exactly those of `all`), so only its counters are read.
        `fold_unknown`: names of no existing deployment are summed into one series, group null."""
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
                    values, strays = await self._ranked(conn, workspace_id, query, dimension, fold_unknown)
                names, more = values[: query.limit], len(values) > query.limit
                if may_sum and more:  # the total's bins are needed after all (its counters again)
                    reading = tasks.create_task(total(with_bins=True))
                found = await self._sliced(
                    workspace_id, query, dimension, names + strays, per_point, not more
                )
                shown = [found[name] for name in names]
                unknown = Series.summed(None, [found[stray] for stray in strays]) if strays else None
                carrying = None
                if key is not None:
                    carrying = (await self._sliced(workspace_id, query, META_KEY, [key], per_point))[key]
        except ExceptionGroup as failed:  # the first failure as itself, as from one statement
            raise failed.exceptions[0] from failed
        whole = reading.result()
        named = shown + ([unknown] if unknown else [])
        if may_sum and not more:
            whole.add_bins_of(named)
        rest: list[Series] = [unknown] if unknown else []
        if carrying is not None:  # the runs carrying the key; those without it are a series of their own
            rest.append(whole.minus(None, [carrying]))
            folded = carrying
        elif more:
            folded = whole
        else:  # every value is shown
            return whole, named
        other = folded.minus("other", named, other=True)
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

    async def _ranked(
        self, conn: AsyncConnection, workspace_id: str, query: UsageQuery, dimension: str, fold_unknown: bool
    ) -> tuple[list[str], list[str]]:
        """The `limit + 1` busiest values; with `fold_unknown`, of deployments that exist only,
        and apart, every name of the range that is no deployment."""
        if not fold_unknown:
            return await self._busiest(conn, workspace_id, query, dimension, query.limit + 1), []
        ours = deployments.c.workspace_id == workspace_id
        known = sa.select(deployments.c.name).where(ours).scalar_subquery()
        value = usage_rollups.c.value
        return (
            await self._busiest(conn, workspace_id, query, dimension, query.limit + 1, value.in_(known)),
            await self._busiest(conn, workspace_id, query, dimension, None, value.not_in(known)),
        )

    async def _busiest(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        query: UsageQuery,
        dimension: str,
        count: int | None,
        condition: Any = None,
    ) -> list[str]:
        """The dimension's `count` values (every one if None) with the most runs in the range,
        busiest first; only values meeting `condition`, if given."""
        runs = sa.func.sum(usage_rollups.c.runs).label("runs")
        where = self._where(usage_rollups, workspace_id, query, dimension)
        if condition is not None:
            where.append(condition)
        ranked = (
            sa.select(usage_rollups.c.value, runs)
            .where(*where)
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
                    [number(v or 0) for number, v in zip(COUNTER_TYPES, row[2:], strict=True)]
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
