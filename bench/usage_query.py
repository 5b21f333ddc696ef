"""`GET /api/usage` and `GET /api/runs/metadata-keys` at a million runs, without writing a
million runs: the usage rollups that bench/run_log_data.py's log of N runs makes are summed in
Python, as the run writer sums them (`RollupBatch.add_runs`, store/usage_rollups.py), and
inserted as plain rows into a fresh SQLite file and/or a fresh PostgreSQL (tests/support), both
migrated to the newest schema. `UsageReport.usage` and `RunLog.metadata_keys` are then called in
this process: per case one untimed call, then `--repetitions` timed ones, each with a `to` up to
ten minutes before the log's end (as bench/run_log_scale.py asks over HTTP).

    .venv/bin/python bench/usage_query.py [--database sqlite|postgres|both] [--runs N]
        [--repetitions 30] [--explain] [--run-metadata]

Prints a Markdown table: p50/p95 per case and database, and the mean time spent in statements
(SQLAlchemy's cursor events: the database and the driver; the rest is Python). `--explain`
prints each statement of one call with its plan (PostgreSQL: EXPLAIN (ANALYZE, BUFFERS)).
`--run-metadata` also inserts the `run_metadata` rows of the log's last 8 days, which an
implementation of metadata-keys that reads them needs (for comparing with an older checkout).

Making the rows costs about 1.5 minutes of one core per million runs; they are cached in the
temporary directory (one file per N, `--no-cache` to make them anew).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import pickle
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # tests.support: the throw-away PostgreSQL
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.dialects import sqlite as sqlite_dialect  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402

from cpu_meter import background_load  # noqa: E402
from figures import percentile  # noqa: E402
from promptdeck.domain.usage_dimensions import hour_of  # noqa: E402
from promptdeck.domain.usage_query import parse_usage_query  # noqa: E402
from promptdeck.store.database import create_engine, migrate  # noqa: E402
from promptdeck.store.run_log import RunLog  # noqa: E402
from promptdeck.store.run_metadata import metadata_rows  # noqa: E402
from promptdeck.store.tables import run_metadata, usage_latency_bins, usage_rollups  # noqa: E402
from promptdeck.store.usage_report import UsageReport  # noqa: E402
from promptdeck.store.usage_rollups import MetadataCaps, RollupBatch  # noqa: E402
from run_log_data import RunFactory, Shape  # noqa: E402

DATABASES = ("sqlite", "postgres")
SEGMENT = 20_000
GOAL_MS = 200.0
WORKSPACE_ID = "b3c1d2e4f5a60718293a4b5c6d7e8f90"
NOW = dt.datetime(2026, 11, 22, 9, 37, 28, tzinfo=dt.UTC)  # fixed: the cached rows stay valid
RUN_METADATA_DAYS = 8  # the metadata-keys window (7 days) and some margin

# GET /api/usage's parameters per case, `from`/`to` added per call: 30 days ending near NOW.
USAGE_CASES: dict[str, dict[str, str]] = {
    "usage_30d_day": {"bucket": "day"},
    "usage_30d_day_by_deployment": {"bucket": "day", "group_by": "deployment"},
}
MORE_CASES: dict[str, dict[str, str]] = {
    "usage_30d_day_by_model": {"bucket": "day", "group_by": "model"},
    "usage_30d_day_by_user": {"bucket": "day", "group_by": "user"},
    "usage_30d_day_by_plan": {"bucket": "day", "group_by": "metadata.plan"},
    "usage_30d_day_by_customer_totals": {
        "bucket": "day",
        "group_by": "metadata.customer_id",
        "percentiles": "totals",
    },
    "usage_24h_hour_by_deployment": {"bucket": "hour", "group_by": "deployment"},
}


# ── the rows ────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Chunk:
    """Finished rows: every hour before the newest one of the runs summed so far."""

    usage: list[tuple[Any, ...]]
    bins: list[tuple[Any, ...]]
    metadata: list[tuple[Any, ...]]  # run_metadata rows of the last RUN_METADATA_DAYS


def _finished(batch: RollupBatch, before: dt.datetime | None) -> RollupBatch:
    """Take the sums of the hours before `before` (every hour for None) out of `batch`, in hour
    order — each hour's rows in the order the sums met them, as a writer adds them (every
    dimension of an hour side by side), not in the primary key's."""
    done = RollupBatch()
    done.usage = _take(batch.usage, before)
    done.bins = _take(batch.bins, before)
    return done


def _take(sums: dict[Any, Any], before: dt.datetime | None) -> dict[Any, Any]:
    """Remove the sums of the hours before `before` from `sums`; return them in hour order."""
    keys = sorted((k for k in sums if before is None or k[2] < before), key=lambda k: k[2])
    return {key: sums.pop(key) for key in keys}


def make_rows(runs: int) -> Iterator[Chunk]:
    """The rollup rows (and recent metadata rows) of a log of `runs` runs, hour by hour."""
    factory = RunFactory(Shape(WORKSPACE_ID, NOW), runs)
    batch, caps = RollupBatch(), MetadataCaps()
    recent = NOW - dt.timedelta(days=RUN_METADATA_DAYS)
    columns = [c.name for c in run_metadata.columns]
    for segment in factory.segments(SEGMENT):
        meta = [row for record in segment for row in metadata_rows(record)]
        batch.add_runs(segment, meta, caps)
        # every hour before the newest is finished (the last segment finishes them all)
        done = _finished(batch, None if factory.made >= runs else hour_of(segment[-1].created_at))
        yield Chunk(
            done.usage_rows(ordered=False),
            done.bin_rows(ordered=False),
            [tuple(r[c] for c in columns) for r in meta if r["created_at"] >= recent],
        )


def cached_rows(runs: int, use_cache: bool, log: Callable[[str], None]) -> Iterator[Chunk]:
    """make_rows, read from (or written to) a cache file."""
    path = Path(tempfile.gettempdir()) / f"promptdeck-usage-rows-{runs}-{NOW:%Y%m%d%H%M}.pickle"
    if use_cache and path.exists():
        log(f"rows: from {path}")
        with path.open("rb") as cache:
            while (rows := pickle.load(cache)) is not None:
                yield Chunk(*rows)
        return
    log(f"rows: summing {runs:,} runs (cached in {path})")
    partial = path.with_suffix(".partial")
    with partial.open("wb") as cache:
        for chunk in make_rows(runs):
            rows = (chunk.usage, chunk.bins, chunk.metadata)  # no class: any script can read them
            pickle.dump(rows, cache, protocol=pickle.HIGHEST_PROTOCOL)
            yield chunk
        pickle.dump(None, cache)
    if use_cache:
        partial.rename(path)
    else:
        partial.unlink()


# ── the databases ───────────────────────────────────────────────────────────────────────────────


class Loader:
    """Inserts chunks of rows into one database, as they are (no upserts)."""

    kind: str

    async def add(self, chunk: Chunk, with_metadata: bool) -> None:
        raise NotImplementedError

    async def settle(self) -> None:
        """What the database would do by itself after such writes."""
        raise NotImplementedError


class PostgresLoader(Loader):
    kind = "postgres"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, chunk: Chunk, with_metadata: bool) -> None:
        tables = [(usage_rollups, chunk.usage), (usage_latency_bins, chunk.bins)]
        if with_metadata:
            tables.append((run_metadata, chunk.metadata))
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection  # asyncpg's: COPY
            for table, rows in tables:
                if rows:
                    columns = [c.name for c in table.columns]
                    await driver.copy_records_to_table(table.name, records=rows, columns=columns)

    async def settle(self) -> None:
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            await driver.execute("VACUUM ANALYZE")  # outside a transaction


class SqliteLoader(Loader):
    kind = "sqlite"

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path)
        dialect = sqlite_dialect.dialect()
        process = usage_rollups.c.bucket_start.type.dialect_impl(dialect).bind_processor(dialect)
        assert process is not None
        self._time: Callable[[Any], Any] = process
        self._times: dict[dt.datetime, Any] = {}

    def _hour(self, moment: dt.datetime) -> Any:
        converted = self._times.get(moment)
        if converted is None:
            converted = self._times[moment] = self._time(moment)
        return converted

    async def add(self, chunk: Chunk, with_metadata: bool) -> None:
        def insert(table: sa.Table, rows: list[tuple[Any, ...]], at: int, per_row: bool = False) -> None:
            marks = ", ".join("?" * len(table.columns))
            convert = self._time if per_row else self._hour
            self.connection.executemany(
                f"INSERT INTO {table.name} VALUES ({marks})",
                ((*row[:at], convert(row[at]), *row[at + 1 :]) for row in rows),
            )

        insert(usage_rollups, chunk.usage, 2)
        insert(usage_latency_bins, chunk.bins, 2)
        if with_metadata:
            insert(run_metadata, chunk.metadata, 3, per_row=True)
        self.connection.commit()

    async def settle(self) -> None:
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.connection.close()


@dataclass
class Database:
    kind: str
    url: str
    engine: AsyncEngine
    loader: Loader
    statements: list[tuple[str, Any, float]] = field(default_factory=list)  # for --explain
    statement_s: float = 0.0

    def watch(self) -> None:
        """Add up the time of every statement (and keep them for --explain)."""
        started: dict[int, float] = {}

        @sa.event.listens_for(self.engine.sync_engine, "before_cursor_execute")
        def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            started[id(cursor)] = time.perf_counter()

        @sa.event.listens_for(self.engine.sync_engine, "after_cursor_execute")
        def after(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            took = time.perf_counter() - started.pop(id(cursor), time.perf_counter())
            self.statement_s += took
            self.statements.append((statement, parameters, took))


@contextlib.asynccontextmanager
async def open_database(kind: str, directory: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        path = directory / "promptdeck.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(migrate, url)
        engine = create_engine(url)
        try:
            yield Database(kind, url, engine, SqliteLoader(str(path)))
        finally:
            await engine.dispose()
        return
    server = start_postgres()
    if isinstance(server, str):
        raise SystemExit(f"PostgreSQL: {server}")
    try:
        url = server.new_database()
        await asyncio.to_thread(migrate, url)
        engine = create_engine(url)
        try:
            yield Database(kind, url, engine, PostgresLoader(engine))
        finally:
            await engine.dispose()
    finally:
        server.stop()  # also deletes its data directory


# ── measuring ───────────────────────────────────────────────────────────────────────────────────


def usage_params(fixed: dict[str, str], rng: random.Random) -> dict[str, str]:
    until = NOW - dt.timedelta(seconds=rng.uniform(0, 600))
    span = dt.timedelta(hours=24) if fixed.get("bucket") == "hour" else dt.timedelta(days=30)
    return {**fixed, "from": (until - span).isoformat(), "to": until.isoformat()}


def usage_call(database: Database, fixed: dict[str, str]) -> Callable[[random.Random], Any]:
    """One GET /api/usage as the API makes it (parse_usage_query, then UsageReport.usage)."""
    report = UsageReport(database.engine)

    async def call(rng: random.Random) -> Any:
        p = usage_params(fixed, rng)
        query = parse_usage_query(
            start=p["from"],
            end=p["to"],
            bucket=p["bucket"],
            group_by=p.get("group_by"),
            deployment=p.get("deployment"),
            limit=p.get("limit"),
            percentiles=p.get("percentiles"),
            now=NOW,
        )
        return await report.usage(WORKSPACE_ID, query)

    return call


def metadata_keys_call(database: Database) -> Callable[[random.Random], Any]:
    run_log = RunLog(database.engine)

    async def call(rng: random.Random) -> Any:
        return await run_log.metadata_keys(WORKSPACE_ID, now=NOW - dt.timedelta(seconds=rng.uniform(0, 600)))

    return call


async def timed(
    database: Database, name: str, call: Callable[[random.Random], Any], repetitions: int
) -> dict[str, Any]:
    rng = random.Random(name)
    await call(rng)  # untimed: caches warm, statements prepared
    database.statement_s = 0.0
    latencies = []
    for _ in range(repetitions):
        started = time.perf_counter_ns()
        await call(rng)
        latencies.append(time.perf_counter_ns() - started)
    latencies.sort()
    return {
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "statements_ms": round(database.statement_s * 1000 / repetitions, 1),
    }


async def explain(database: Database, name: str, call: Callable[[random.Random], Any]) -> None:
    """Each statement of one call, with the database's plan."""
    database.statements.clear()
    await call(random.Random(name))
    captured = list(database.statements)
    print(f"\n### {database.kind}: {name} ({len(captured)} statements)\n")
    for statement, parameters, took in captured:
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if database.kind == "postgres" else "EXPLAIN QUERY PLAN "
        async with database.engine.connect() as conn:
            plan = await conn.exec_driver_sql(prefix + statement, parameters)
            lines = [" | ".join(str(v) for v in row) for row in plan]
        print(f"```\n-- {took * 1000:.1f} ms\n{statement}\n-- {parameters}\n" + "\n".join(lines) + "\n```")


async def measure(kind: str, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="promptdeck-usage-") as directory:
        async with open_database(kind, Path(directory)) as database:
            started = time.perf_counter()
            usage_rows = bin_rows = 0
            for chunk in cached_rows(args.runs, not args.no_cache, log):
                await database.loader.add(chunk, args.run_metadata)
                usage_rows, bin_rows = usage_rows + len(chunk.usage), bin_rows + len(chunk.bins)
            await database.loader.settle()
            log(
                f"{kind}: {usage_rows:,} usage rows, {bin_rows:,} latency-bin rows in "
                f"{time.perf_counter() - started:.0f} s"
            )
            database.watch()
            load = await asyncio.to_thread(background_load)
            log(f"{kind}: other load on the machine before measuring: {load} cores")
            cases = {**USAGE_CASES, **(MORE_CASES if args.more else {})}
            calls = {name: usage_call(database, fixed) for name, fixed in cases.items()}
            calls["metadata_keys"] = metadata_keys_call(database)
            found: dict[str, Any] = {}
            for name, call in calls.items():
                found[name] = figures = await timed(database, name, call, args.repetitions)
                log(f"  {kind} {name:<36} p50 {figures['p50_ms']:>7.1f} ms  p95 {figures['p95_ms']:>7.1f} ms")
            if args.explain:
                for name, call in calls.items():
                    await explain(database, name, call)
            return {"other_load": load, "cases": found}


def markdown(results: dict[str, dict[str, Any]], runs: int, repetitions: int) -> str:
    """`results`: per database, its `other_load` and its `cases`' figures."""
    kinds = list(results)
    load = ", ".join(f"{kind} {results[kind]['other_load']}" for kind in kinds)
    lines = [
        f"{runs:,} runs, {repetitions} calls per case; p50 / p95 ms (statements ms, mean); "
        f"other load on the machine before measuring, in cores: {load}",
        "",
        "| case | " + " | ".join(kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for name in results[kinds[0]]["cases"]:
        cells = []
        for kind in kinds:
            f = results[kind]["cases"][name]
            miss = " (over the goal)" if name.startswith("usage_") and f["p95_ms"] >= GOAL_MS else ""
            cells.append(f"{f['p50_ms']:.1f} / {f['p95_ms']:.1f} ({f['statements_ms']:.1f}){miss}")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database", choices=(*DATABASES, "both"), default="both")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--more", action="store_true", help="also other groupings and an hourly series")
    parser.add_argument("--explain", action="store_true", help="print every statement's plan")
    parser.add_argument("--run-metadata", action="store_true", help="also insert the last days' run_metadata")
    parser.add_argument("--no-cache", action="store_true", help="make the rows anew, keep no cache file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    kinds = DATABASES if args.database == "both" else (args.database,)
    results = {kind: asyncio.run(measure(kind, args, log)) for kind in kinds}
    print(markdown(results, args.runs, args.repetitions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
