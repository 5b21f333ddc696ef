"""The run log at a million runs: how fast it is written, listed and summed up, on SQLite and
PostgreSQL.

For each database, in a fresh temporary database migrated to the newest schema:

* writes N synthetic runs (bench/run_log_data.py; default 1,000,000 over 60 days) through a
  real RunWriter (start, put every run, stop), segment by segment, alternating the batch sizes
  (on SQLite 500 and 5,000, on PostgreSQL its default, 500), and reports runs/s per batch size;
* starts a real promptdeck server on that database (in this process, like the tests'
  live server) and times `GET /api/runs` over HTTP: two metadata conditions and a 7-day range,
  the first page of 50, sorted by time, latency, cost and tokens, and the sorts alone; each
  case 30+ times with varied values (p50, p95). Every page is checked against its filters;
* times `GET /api/usage?bucket=day` over 30 days, plain and grouped by deployment;
* reports the database's size on disk, per table and index, and each query's plan.

    .venv/bin/python bench/run_log_scale.py [--quick] [--database sqlite|postgres|both]

Prints Markdown tables, writes bench/results/run_log_<database>_latest.json and compares
them with bench/results/run_log_baseline.json. See bench/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import gc
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # tests.support: the throw-away PostgreSQL and the live server
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402
from sqlalchemy.ext.compiler import compiles  # noqa: E402
from sqlalchemy.sql.base import Executable  # noqa: E402
from sqlalchemy.sql.elements import ClauseElement  # noqa: E402
from tests.support.live_server import start_server  # noqa: E402
from tests.support.postgres import PostgresServer, start_postgres  # noqa: E402

from cpu_meter import background_load, core_ticks, process_cpu_ns  # noqa: E402
from figures import NS_PER_MS, change_cell, fmt, percentile  # noqa: E402
from promptdeck.config import Settings  # noqa: E402
from promptdeck.domain.run_filters import check_sort, parse_filters  # noqa: E402
from promptdeck.store import run_log_plan  # noqa: E402
from promptdeck.store.access import AccessStore  # noqa: E402
from promptdeck.store.database import create_engine, migrate, sqlite_file  # noqa: E402
from promptdeck.store.run_log_plan import page_statement  # noqa: E402
from promptdeck.store.run_writer import RunWriter  # noqa: E402
from promptdeck.store.wal_checkpoints import WalCheckpointer  # noqa: E402
from run_log_data import CUSTOMERS, DAYS, END_USERS, PLANS, SEED, RunFactory, Shape  # noqa: E402
from run_meta import cpu_model, git_state  # noqa: E402

RESULTS = HERE / "results"
DATABASES = ("sqlite", "postgres")

# Goals from the issue.
GOAL_WRITER_RUNS_PER_S = 5000.0
GOAL_LIST_P95_MS = 100.0
GOAL_USAGE_MS = 200.0
# The writer is measured twice: writing the 60-day log, and then runs arriving live.
WRITER_PHASES = {"writer": "the 60-day log", "live_writer": "runs arriving live"}
PAGE = 50


# ── the databases ───────────────────────────────────────────────────────────────────────────────


@dataclass
class Database:
    """A fresh database for one run of the benchmark, and where its server keeps its files."""

    kind: str
    url: str
    data_dir: Path
    postgres: PostgresServer | None = None
    settings: dict[str, str] = field(default_factory=dict)

    def server_pids(self) -> list[int]:
        """PostgreSQL's processes (they do the database's work, so they are not "other load")."""
        if self.postgres is None:
            return []
        pid_file = self.postgres.directory / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            postmaster = int(pid_file.read_text().split()[0])
            children = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, check=False
            ).stdout.split()
            return [postmaster, *(int(p) for p in children)]
        return []


@contextlib.contextmanager
def sqlite_database() -> Iterator[Database]:
    with tempfile.TemporaryDirectory(prefix="promptdeck-runlog-") as tmp:
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp}/promptdeck.db", Path(tmp))


def durable(server: PostgresServer, settings: tuple[str, ...] = ()) -> None:
    """Restart the tests' PostgreSQL with the options it was started with but fsync on: they
    turn it off for speed, and a writer benchmark without it would measure commits that are not
    durable. (On the command line, so ALTER SYSTEM could not override it.) `settings` are more
    `name=value` options (`--postgres-setting`)."""
    data = server.directory / "data"
    started_with = shlex.split((data / "postmaster.opts").read_text())[1:]  # without the program
    options = [arg for i, arg in enumerate(started_with) if "-D" not in (arg, started_with[i - 1])]
    options = ["fsync=on" if arg == "fsync=off" else arg for arg in options]
    options += [part for setting in settings for part in ("-c", setting)]
    command = [*server.as_user, str(server.bin_dir / "pg_ctl"), "-D", str(data), "-o", shlex.join(options)]
    log = ["-l", str(server.directory / "log")]
    subprocess.run([*command, *log, "-m", "fast", "-w", "restart"], check=True, capture_output=True)


@contextlib.contextmanager
def postgres_database(settings: tuple[str, ...] = ()) -> Iterator[Database]:
    server = start_postgres()
    if isinstance(server, str):
        raise SystemExit(f"PostgreSQL: {server}")
    try:
        durable(server, settings)
        with tempfile.TemporaryDirectory(prefix="promptdeck-runlog-") as tmp:
            yield Database("postgres", server.new_database(), Path(tmp), server)
    finally:
        server.stop()  # also deletes its data directory


def open_database(kind: str, settings: tuple[str, ...] = ()) -> contextlib.AbstractContextManager[Database]:
    return sqlite_database() if kind == "sqlite" else postgres_database(settings)


async def database_settings(engine: AsyncEngine, kind: str) -> dict[str, str]:
    """The settings that decide write and read speed, as the server sees them."""
    names = (
        ("journal_mode", "synchronous", "cache_size", "page_size")
        if kind == "sqlite"
        else ("server_version", "fsync", "synchronous_commit", "shared_buffers", "work_mem")
    )
    found: dict[str, str] = {}
    async with engine.connect() as conn:
        for name in names:
            statement = f"PRAGMA {name}" if kind == "sqlite" else f"SHOW {name}"
            found[name] = str((await conn.exec_driver_sql(statement)).scalar())
    return found


# ── load on the machine ─────────────────────────────────────────────────────────────────────────


@dataclass
class LoadMeter:
    """How busy the cores were during a phase beyond this benchmark (and its PostgreSQL): the
    machine is shared, and other work makes the figures slower and noisier."""

    pids: Callable[[], list[int]]
    start_wall: float = 0.0
    start_cores: dict[int, tuple[int, int]] = field(default_factory=dict)
    start_cpu: dict[int, int] = field(default_factory=dict)

    def _cpu(self) -> dict[int, int]:
        found = {}
        for pid in [os.getpid(), *self.pids()]:
            with contextlib.suppress(OSError):
                found[pid] = process_cpu_ns(pid)
        return found

    def start(self) -> None:
        self.start_wall = time.perf_counter()
        self.start_cores = core_ticks()
        self.start_cpu = self._cpu()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.start_wall
        ours = sum(ns - self.start_cpu.get(pid, 0) for pid, ns in self._cpu().items()) / 1e9
        cores = core_ticks()
        busy = 0.0
        for core, (b1, t1) in cores.items():
            b0, t0 = self.start_cores.get(core, (b1, t1))
            busy += (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        return {
            "wall_s": round(wall, 2),
            "cpu_s": round(ours, 3),
            "benchmark_cores": round(ours / wall, 2) if wall else 0.0,
            "other_load_cores": round(max(0.0, busy - ours / wall), 2) if wall >= 0.5 else 0.0,
        }


# ── writing ─────────────────────────────────────────────────────────────────────────────────────


# The writer's batch sizes, taking turns, per database unless --batch-sizes says: on SQLite its
# default (5,000) beside PostgreSQL's (500); on PostgreSQL its own alone. There two 5,000-run
# batches in flight slowed the 500-run ones taking turns with them (60-day log 3,152 runs/s, live
# 3,856, against 3,670 and 4,821 beside batches of 100), probably by filling its 128 MB of shared
# buffers with dirty pages, so mixing them would misstate the default.
BATCH_SIZES = {"sqlite": (500, 5000), "postgres": (500,)}


@dataclass(frozen=True)
class Plan:
    runs: int
    segment: int
    batch_sizes: tuple[int, ...] | None  # None: BATCH_SIZES
    repetitions: int
    quick: bool
    live_runs: int

    def sizes(self, kind: str) -> tuple[int, ...]:
        return self.batch_sizes or BATCH_SIZES[kind]


async def bootstrap(url: str) -> tuple[str, str]:
    """Migrate; return the workspace and an admin key for the server's API."""
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    try:
        access = AccessStore(engine)
        workspace_id = await access.first_workspace()
        _, secret = await access.create_key(workspace_id, "run-log-bench", ["admin"])
        return workspace_id, secret
    finally:
        await engine.dispose()


async def drop_indexes(url: str, names: list[str]) -> None:
    """For experiments: measure without some index (`--drop-index`). A dropped sort index is no
    longer named to SQLite's planner either (the server runs in this process)."""
    for sort, index in list(run_log_plan.SORT_INDEXES.items()):
        if index in names:
            del run_log_plan.SORT_INDEXES[sort]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for name in names:
                await conn.exec_driver_sql(f"DROP INDEX {name}")
    finally:
        await engine.dispose()


class StatementClock:
    """Where the writer's time goes: the time of each kind of statement it runs (`INSERT INTO
    runs`, the rollups' upserts, ...) and of its commits, from SQLAlchemy's events, whatever the
    writer does. The rest is Python: preparing rows, the event loop, the driver."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.spent: dict[str, float] = {}
        self.engine = engine.sync_engine
        self._commit = self.engine.dialect.do_commit
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        self.engine.dialect.do_commit = self._timed_commit  # type: ignore[method-assign]

    def _before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        kind = " ".join(words[:3]) if words[:2] == ["INSERT", "INTO"] else " ".join(words[:2])
        self._add(kind, time.perf_counter() - conn.info.pop("started", time.perf_counter()))

    def _timed_commit(self, dbapi_connection: Any) -> None:
        started = time.perf_counter()
        self._commit(dbapi_connection)
        self._add("COMMIT", time.perf_counter() - started)

    def _add(self, kind: str, seconds: float) -> None:
        self.spent[kind] = self.spent.get(kind, 0.0) + seconds

    def per_run_us(self, runs: int, total_s: float) -> dict[str, float]:
        found = {k: round(v / runs * 1e6, 1) for k, v in sorted(self.spent.items(), key=lambda kv: -kv[1])}
        rest = total_s - sum(self.spent.values())
        if rest >= 0:  # with batches written at once (PostgreSQL), statements overlap: no rest
            found["everything else"] = round(rest / runs * 1e6, 1)
        return found


async def write_log(
    database: Database,
    factory: RunFactory,
    segment: int,
    batch_sizes: tuple[int, ...],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every run of the factory through a RunWriter: one writer per segment (start, put, stop),
    the batch sizes taking turns so that each meets the table at every size."""
    engine = create_engine(database.url)
    segments: list[dict[str, Any]] = []
    meter = LoadMeter(database.server_pids)
    path = sqlite_file(database.url)
    checkpointer = WalCheckpointer(path) if path else None  # as the server runs one
    if checkpointer is not None:
        checkpointer.start()
    try:
        database.settings = database.settings or await database_settings(engine, database.kind)
        clock = StatementClock(engine)
        meter.start()
        for number, runs in enumerate(factory.segments(segment)):
            batch_size = batch_sizes[number % len(batch_sizes)]
            writer = RunWriter(engine, batch_size=batch_size)
            gc.collect()
            started = time.perf_counter()
            writer.start()
            for record in runs:
                await writer.put(record)
                if writer.metrics.failed:  # it retries every batch for seconds: stop at the first
                    raise SystemExit("the run writer cannot write (its log above says why)")
            await writer.stop()
            seconds = time.perf_counter() - started
            if writer.metrics.failed:
                raise SystemExit(f"the writer failed {writer.metrics.failed} runs")
            segments.append(
                {
                    "batch_size": batch_size,
                    "runs_before": factory.made - len(runs),
                    "runs": len(runs),
                    "seconds": round(seconds, 3),
                    "runs_per_s": round(len(runs) / seconds, 1),
                }
            )
            log(
                f"  wrote {factory.made:>9,} runs  (segment of {len(runs):,} at batch {batch_size}: "
                f"{len(runs) / seconds:,.0f} runs/s)"
            )
        load = meter.stop()
    finally:
        if checkpointer is not None:
            await checkpointer.stop()
        await engine.dispose()
    by_batch = {}
    for size in batch_sizes:
        mine = [s for s in segments if s["batch_size"] == size]
        runs_written, seconds = sum(s["runs"] for s in mine), sum(s["seconds"] for s in mine)
        half = len(mine) // 2
        by_batch[str(size)] = {
            "runs": runs_written,
            "seconds": round(seconds, 2),
            "runs_per_s": round(runs_written / seconds, 1) if seconds else None,
            # the first and the last half of the log: does writing slow down as the tables grow?
            "first_half_runs_per_s": _rate(mine[:half]),
            "second_half_runs_per_s": _rate(mine[half:]),
        }
    total_s = sum(s["seconds"] for s in segments)
    return {
        "by_batch_size": by_batch,
        "us_per_run": clock.per_run_us(factory.made, total_s),
        "segments": segments,
        "load": load,
    }


def live_factory(workspace_id: str, runs: int) -> RunFactory:
    """Runs as they arrive at the goal's rate: stamped over the last runs / 5,000 seconds, so
    they fall in the current hour, as a writer taking 5,000 runs/s sees them. (The 60-day log
    written first has some 700 runs an hour: every batch spreads over many hours' rollup rows.)"""
    span = dt.timedelta(seconds=runs / GOAL_WRITER_RUNS_PER_S)
    return RunFactory(Shape(workspace_id, dt.datetime.now(dt.UTC), span=span), runs, seed=SEED + 1)


def _rate(segments: list[dict[str, Any]]) -> float | None:
    seconds = sum(s["seconds"] for s in segments)
    return round(sum(s["runs"] for s in segments) / seconds, 1) if seconds else None


async def settle(database: Database) -> None:
    """What a database does by itself after a bulk of writes, done now so every query meets it:
    PostgreSQL's autovacuum analyzes (and vacuums) a table that grew; SQLite checkpoints its WAL.
    SQLite is not ANALYZEd: promptdeck never does it, so its planner works without statistics."""
    engine = create_engine(database.url)
    try:
        if database.kind == "postgres":
            async with engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql("VACUUM ANALYZE")
        else:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await engine.dispose()


async def sizes(database: Database) -> dict[str, Any]:
    """Bytes on disk: the whole database, and each table (with its TOAST on PostgreSQL) and index."""
    engine = create_engine(database.url)
    objects: dict[str, int] = {}
    try:
        async with engine.connect() as conn:
            if database.kind == "sqlite":
                rows = await conn.exec_driver_sql(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
                )
                objects = {name: int(size) for name, size in rows}
                path = Path(database.url.split("///", 1)[1])
                total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
            else:
                rows = await conn.exec_driver_sql(
                    "SELECT c.relname, CASE c.relkind WHEN 'r' THEN pg_total_relation_size(c.oid) "
                    "- pg_indexes_size(c.oid) ELSE pg_relation_size(c.oid) END "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') ORDER BY 2 DESC"
                )
                objects = {name: int(size) for name, size in rows}
                total = int(
                    (await conn.exec_driver_sql("SELECT pg_database_size(current_database())")).scalar() or 0
                )
    finally:
        await engine.dispose()
    shown = {name: size for name, size in objects.items() if size >= 1 << 20}  # 1 MiB or more
    return {"total_bytes": total, "objects": dict(sorted(shown.items(), key=lambda kv: -kv[1]))}


# ── the queries ─────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ListCase:
    """One shape of `GET /api/runs`. `filters`: "two" (env + plan: both common), "score" (env +
    score>x), "customer" (env + one of the many rare customers), "user" (a rare end user + env),
    or "" (none)."""

    name: str
    sort: str
    filters: str
    days: int | None  # a time range of this many days, or the whole log

    @property
    def what(self) -> str:
        filters = {
            "two": "env + plan",
            "score": "env + score>x",
            "customer": "env + rare customer_id",
            "user": "rare end user + env",
            "": "no filter",
        }[self.filters]
        span = f"{self.days} days" if self.days else "whole log"
        return f"{filters}, {span}, sort={self.sort}"


LIST_CASES = (
    ListCase("meta2_7d_time", "time", "two", 7),  # the query
    ListCase("score_7d_time", "time", "score", 7),
    ListCase("meta2_7d_latency", "latency", "two", 7),
    ListCase("meta2_7d_cost", "cost", "two", 7),
    ListCase("meta2_7d_tokens", "tokens", "two", 7),
    ListCase("customer_7d_time", "time", "customer", 7),
    ListCase("customer_all_latency", "latency", "customer", None),
    ListCase("user_all_cost", "cost", "user", None),
    ListCase("7d_latency", "latency", "", 7),
    ListCase("7d_cost", "cost", "", 7),
    ListCase("7d_tokens", "tokens", "", 7),
    ListCase("all_time", "time", "", None),
    ListCase("all_latency", "latency", "", None),
    ListCase("all_cost", "cost", "", None),
    ListCase("all_tokens", "tokens", "", None),
)
GOAL_CASES = ("meta2_7d_time", "score_7d_time", "meta2_7d_latency", "meta2_7d_cost", "meta2_7d_tokens")


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def list_params(case: ListCase, rng: random.Random, now: dt.datetime) -> dict[str, Any]:
    """Varied values: prod or staging, any plan, a score threshold in [0.5, 0.95], a customer
    or an end user outside the busiest hundred, a window that ends now one time in three and
    anywhere in the log otherwise."""
    params: dict[str, Any] = {"limit": PAGE, "sort": case.sort}
    env = "prod" if rng.random() < 0.7 else "staging"
    if case.filters == "two":
        params["meta"] = [f"env:{env}", f"plan:{PLANS[rng.randrange(len(PLANS))]}"]
    elif case.filters == "score":
        params["meta"] = [f"env:{env}", f"score>{rng.uniform(0.5, 0.95):.2f}"]
    elif case.filters == "customer":
        params["meta"] = [f"env:{env}", f"customer_id:cus_{rng.randrange(100, CUSTOMERS):05d}"]
    elif case.filters == "user":
        params["user"] = f"user-{rng.randrange(100, END_USERS):05d}"
        params["meta"] = [f"env:{env}"]
    if case.days:
        latest = DAYS - case.days
        until = now if rng.random() < 1 / 3 else now - dt.timedelta(days=rng.uniform(0, latest))
        params["since"] = iso(until - dt.timedelta(days=case.days))
        params["until"] = iso(until)
    return params


SORT_VALUE: dict[str, Callable[[dict[str, Any]], float]] = {
    "time": lambda run: dt.datetime.fromisoformat(run["created_at"]).timestamp(),
    "latency": lambda run: float(run["duration_ms"]),
    "cost": lambda run: -1.0 if run["cost"] is None else float(run["cost"]),
    "tokens": lambda run: float(run["input_tokens"] + run["output_tokens"]),
}


def check_page(case: ListCase, params: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """A fast wrong answer must not pass for a fast answer: every run matches, in order."""
    since = dt.datetime.fromisoformat(params["since"]) if "since" in params else None
    until = dt.datetime.fromisoformat(params["until"]) if "until" in params else None
    values = [SORT_VALUE[case.sort](run) for run in runs]
    if values != sorted(values, reverse=True):
        raise SystemExit(f"{case.name}: the page is not sorted by {case.sort}")
    for run in runs:
        if "user" in params and run["end_user"] != params["user"]:
            raise SystemExit(f"{case.name}: run {run['id']} is not of end user {params['user']}")
        created = dt.datetime.fromisoformat(run["created_at"])
        if (since and created < since) or (until and created >= until):
            raise SystemExit(f"{case.name}: run {run['id']} is outside the time range")
        metadata = run["metadata"] or {}
        for condition in params.get("meta", []):
            key, _, value = condition.partition(":")
            if key == condition:  # score>x
                key, _, threshold = condition.partition(">")
                matches = isinstance(metadata.get(key), int | float) and metadata[key] > float(threshold)
            else:
                matches = metadata.get(key) == value
            if not matches:
                raise SystemExit(f"{case.name}: run {run['id']} does not match {condition}")


def check_body(case: ListCase, params: dict[str, Any], body: Any) -> None:
    check_page(case, params, body["data"])


def timed_get(client: httpx.Client, path: str, params: dict[str, Any]) -> tuple[int, httpx.Response]:
    started = time.perf_counter_ns()
    response = client.get(path, params=params)
    return time.perf_counter_ns() - started, response


def repeated(
    client: httpx.Client,
    path: str,
    make_params: Callable[[], dict[str, Any]],
    repetitions: int,
    meter: LoadMeter,
    check: Callable[[dict[str, Any], Any], None] = lambda params, body: None,
) -> dict[str, Any]:
    """One untimed call (a cold cache), then `repetitions` timed ones with fresh values, each
    answer checked. `cpu_ms` is the CPU per request of this process (client and server) and of
    PostgreSQL: unlike the latencies, it does not grow with other load on the machine."""
    timed_get(client, path, make_params())
    latencies, rows = [], 0
    meter.start()
    for _ in range(repetitions):
        params = make_params()
        took, response = timed_get(client, path, params)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: HTTP {response.status_code}: {response.text[:500]}")
        body = response.json()
        check(params, body)
        latencies.append(took)
        rows += len(body.get("data") or [])
    cpu_ms = meter.stop()["cpu_s"] * 1000 / repetitions
    ordered = sorted(latencies)
    return {
        "repetitions": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p95_ms": percentile(ordered, 95),
        "max_ms": percentile(ordered, 100),
        "mean_ms": round(sum(ordered) / len(ordered) / NS_PER_MS, 3),
        "cpu_ms": round(cpu_ms, 2),
        "mean_rows": round(rows / repetitions, 1),
    }


def measure_lists(
    client: httpx.Client, now: dt.datetime, repetitions: int, meter: LoadMeter, log: Callable[[str], None]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for case in LIST_CASES:
        make_params = functools.partial(list_params, case, random.Random(case.name), now)
        check = functools.partial(check_body, case)
        found = repeated(client, "/api/runs", make_params, repetitions, meter, check)
        results[case.name] = {"what": case.what, **found}
        log(
            f"  {case.name:<20} p50 {found['p50_ms']:>8.1f} ms  p95 {found['p95_ms']:>8.1f} ms  ({case.what})"
        )
    return results


USAGE_CASES: dict[str, dict[str, str]] = {
    "usage_30d_day": {"bucket": "day"},
    "usage_30d_day_by_deployment": {"bucket": "day", "group_by": "deployment"},
}


def measure_usage(
    client: httpx.Client, now: dt.datetime, repetitions: int, meter: LoadMeter, log: Callable[[str], None]
) -> dict[str, Any]:
    """`GET /api/usage` over the last 30 days, `to` up to ten minutes before the log's end."""
    if client.get("/api/usage").status_code == 404:
        log("  GET /api/usage is not there (HTTP 404): not measured")
        return {"missing": "GET /api/usage answered 404"}
    results: dict[str, Any] = {}
    for name, fixed in USAGE_CASES.items():
        rng = random.Random(name)

        def params(fixed: dict[str, str] = fixed, rng: random.Random = rng) -> dict[str, Any]:
            until = now - dt.timedelta(seconds=rng.uniform(0, 600))
            return {**fixed, "from": iso(until - dt.timedelta(days=30)), "to": iso(until)}

        found = repeated(client, "/api/usage", params, repetitions, meter)
        results[name] = {"params": {**fixed, "from": "30 days ago", "to": "now"}, **found}
        log(f"  {name:<28} p50 {found['p50_ms']:>8.1f} ms  p95 {found['p95_ms']:>8.1f} ms")
    return results


def measure_metadata_keys(
    client: httpx.Client, repetitions: int, meter: LoadMeter, log: Callable[[str], None]
) -> dict[str, Any]:
    """`GET /api/runs/metadata-keys` (the keys of the last 7 days' runs, with examples): no goal,
    measured because it reads every metadata row of those 7 days."""
    found = repeated(client, "/api/runs/metadata-keys", dict, repetitions, meter)
    log(f"  {'metadata_keys':<20} p50 {found['p50_ms']:>8.1f} ms  p95 {found['p95_ms']:>8.1f} ms")
    return found


# ── query plans ─────────────────────────────────────────────────────────────────────────────────


class Explain(Executable, ClauseElement):
    """EXPLAIN QUERY PLAN (SQLite) or EXPLAIN ANALYZE (PostgreSQL) of a statement, with its
    parameters bound the way the server binds them."""

    inherit_cache = False

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement


@compiles(Explain)
def _explain(element: Explain, compiler: Any, **kw: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if compiler.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    text: str = prefix + compiler.process(element.statement, **kw)
    return text


async def explain_lists(database: Database, workspace_id: str, now: dt.datetime) -> dict[str, Any]:
    """How the server reads each case's first page (store.run_log.page_statement): the filter that
    drives it or the index it walks, the candidates' counts, and the database's plan."""
    engine = create_engine(database.url)
    plans: dict[str, Any] = {}
    try:
        for case in LIST_CASES:
            params = list_params(case, random.Random(case.name), now)
            filters = parse_filters(
                meta=params.get("meta"),
                since=params.get("since"),
                until=params.get("until"),
                user=params.get("user"),
            )
            sort, order = check_sort(case.sort, "desc")
            async with engine.connect() as conn:
                query, plan = await page_statement(conn, workspace_id, filters, sort, order, None, PAGE + 1)
                rows = (await conn.execute(Explain(query))).all()
            if database.kind == "sqlite":  # (id, parent, notused, detail): indent by depth
                depth: dict[int, int] = {0: -1}
                lines = []
                for node, parent, _, detail in rows:
                    depth[node] = depth.get(parent, -1) + 1
                    lines.append("  " * depth[node] + detail)
            else:
                lines = [row[0] for row in rows]
            plans[case.name] = {
                "params": params,
                "driver": plan.driver.name if plan.driver else None,
                "walks": plan.walks,
                "counts": plan.counts,
                "plan": lines,
            }
    finally:
        await engine.dispose()
    return plans


# ── one database ────────────────────────────────────────────────────────────────────────────────


def measure(kind: str, plan: Plan, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    with open_database(kind, tuple(args.postgres_setting)) as database:
        workspace_id, key = asyncio.run(bootstrap(database.url))
        if args.drop_index:
            asyncio.run(drop_indexes(database.url, args.drop_index))
        shape = Shape(workspace_id, dt.datetime.now(dt.UTC))
        log(f"{kind}: writing {plan.runs:,} runs, batch sizes {', '.join(map(str, plan.sizes(kind)))}")
        factory = RunFactory(shape, plan.runs)
        writing = asyncio.run(write_log(database, factory, plan.segment, plan.sizes(kind), log))
        log(f"{kind}: settling ({'VACUUM ANALYZE' if kind == 'postgres' else 'WAL checkpoint'})")
        asyncio.run(settle(database))
        size = asyncio.run(sizes(database))
        log(f"{kind}: {size['total_bytes'] / 2**20:,.0f} MiB on disk; querying through a live server")
        settings = Settings(data_dir=database.data_dir, database_url=database.url)
        server = start_server(settings)
        meter = LoadMeter(database.server_pids)
        try:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=300, trust_env=False) as client:
                meter.start()
                per_case = LoadMeter(database.server_pids)
                lists = measure_lists(client, shape.now, plan.repetitions, per_case, log)
                keys = measure_metadata_keys(client, min(plan.repetitions, 10), per_case, log)
                usage = measure_usage(client, shape.now, plan.repetitions, per_case, log)
                load = meter.stop()
        finally:
            server.stop()
        plans = asyncio.run(explain_lists(database, workspace_id, shape.now)) if args.explain else {}
        log(f"{kind}: writing {plan.live_runs:,} more runs as they arrive live (stamped now)")
        live = live_factory(workspace_id, plan.live_runs)
        segment = max(1000, plan.live_runs // 10)
        live_writing = asyncio.run(write_log(database, live, segment, plan.sizes(kind), log))
        return {
            "meta": {
                "database": kind,
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **args.git_state,  # as the run started: the code it imported
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "database_settings": database.settings,
                "quick": plan.quick,
                "runs": plan.runs,
                "live_runs": plan.live_runs,
                "segment": plan.segment,
                "repetitions": plan.repetitions,
                "dropped_indexes": args.drop_index,
                "duration_s": round(time.perf_counter() - started, 1),
            },
            "writer": writing,
            "live_writer": live_writing,
            "size": size,
            "list": lists,
            "metadata_keys": keys,
            "usage": usage,
            "query_load": load,
            "plans": plans,
        }


# ── the report ──────────────────────────────────────────────────────────────────────────────────


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for section, what in WRITER_PHASES.items():
        for size, figures_ in report.get(section, {}).get("by_batch_size", {}).items():
            rate = figures_["runs_per_s"]
            found.append(
                {
                    "goal": f"writer, {what}, batch {size}",
                    "target": f">= {GOAL_WRITER_RUNS_PER_S:,.0f} runs/s",
                    "measured": rate,
                    "met": rate is not None and rate >= GOAL_WRITER_RUNS_PER_S,
                }
            )
    for name in GOAL_CASES:
        p95 = report["list"][name]["p95_ms"]
        found.append(
            {
                "goal": f"list: {report['list'][name]['what']}, p95",
                "target": f"< {GOAL_LIST_P95_MS:.0f} ms",
                "measured": p95,
                "met": p95 < GOAL_LIST_P95_MS,
            }
        )
    for name in USAGE_CASES:
        usage = report["usage"].get(name)
        p95 = usage["p95_ms"] if usage else None
        found.append(
            {
                "goal": f"usage: {name}, p95",
                "target": f"< {GOAL_USAGE_MS:.0f} ms",
                "measured": p95,
                "met": p95 is not None and p95 < GOAL_USAGE_MS,
            }
        )
    return found


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    writer = report["writer"]
    lines = [
        f"### {meta['database']}: {meta['runs']:,} runs, {meta['repetitions']} repetitions per query",
        "",
        "| writer | batch size | runs/s | first half | second half |",
        "|---|---:|---:|---:|---:|",
    ]
    for section, what in WRITER_PHASES.items():
        for size, w in report.get(section, {}).get("by_batch_size", {}).items():
            lines.append(
                f"| {what} | {size} | {fmt(w['runs_per_s'])} | {fmt(w['first_half_runs_per_s'])} "
                f"| {fmt(w['second_half_runs_per_s'])} |"
            )
    for section, what in WRITER_PHASES.items():
        if section in report:
            lines += [
                "",
                f"Writer time per run, {what} (µs): "
                + ", ".join(f"{kind} {fmt(us)}" for kind, us in report[section]["us_per_run"].items()),
            ]
    lines += [
        "",
        "| query | p50 (ms) | p95 (ms) | max (ms) | CPU/request (ms) | rows |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, q: dict[str, Any], rows: str = "") -> str:
        figures = (q["p50_ms"], q["p95_ms"], q["max_ms"], q["cpu_ms"])
        return f"| {label} | " + " | ".join(fmt(f) for f in figures) + f" | {rows} |"

    lines += [row(f"`{name}` {q['what']}", q, f"{q['mean_rows']:.0f}") for name, q in report["list"].items()]
    lines.append(row("`metadata_keys` (no goal)", report["metadata_keys"]))
    for name, q in report["usage"].items():
        lines.append(f"| usage | not measured: {q} | | | | |" if name == "missing" else row(f"`{name}`", q))
    size = report["size"]
    lines += [
        "",
        f"On disk: {size['total_bytes'] / 2**20:,.1f} MiB in all; "
        + ", ".join(f"{name} {b / 2**20:,.1f}" for name, b in size["objects"].items())
        + " (MiB)",
        "",
        f"Other load on the machine: {writer['load']['other_load_cores']} cores while writing, "
        f"{report['query_load']['other_load_cores']} while querying.",
        "",
        "| goal | target | measured | met |",
        "|---|---|---:|---|",
    ]
    for goal in report["goals"]:
        lines.append(
            f"| {goal['goal']} | {goal['target']} | {fmt(goal['measured'])} "
            f"| {'yes' if goal['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def compared(
    latest: dict[str, Any], baseline: dict[str, Any]
) -> list[tuple[str, float | None, float | None, str]]:
    rows: list[tuple[str, float | None, float | None, str]] = []
    for section, what in WRITER_PHASES.items():
        for size, w in latest.get(section, {}).get("by_batch_size", {}).items():
            old = baseline.get(section, {}).get("by_batch_size", {}).get(size, {}).get("runs_per_s")
            rows.append((f"writer, {what}, batch {size} (runs/s)", old, w["runs_per_s"], "higher"))
    for section in ("list", "usage"):
        for name, q in latest[section].items():
            if isinstance(q, dict) and "p95_ms" in q:
                old = baseline.get(section, {}).get(name, {}).get("p95_ms")
                rows.append((f"{name} p95 (ms)", old, q["p95_ms"], "lower"))
    rows.append(
        (
            "size on disk (MiB)",
            (baseline.get("size", {}).get("total_bytes") or 0) / 2**20 or None,
            latest["size"]["total_bytes"] / 2**20,
            "lower",
        )
    )
    return rows


def compare(latest: dict[str, Any], baseline: dict[str, Any]) -> str:
    if not baseline:
        return f"No {latest['meta']['database']} baseline in run_log_baseline.json yet."
    lines = [
        f"Compared with the {latest['meta']['database']} baseline of {baseline['meta']['date']} "
        f"({baseline['meta']['runs']:,} runs):"
    ]
    if baseline["meta"]["runs"] != latest["meta"]["runs"]:
        lines.append(f"(this run wrote {latest['meta']['runs']:,} runs: the figures are not comparable)")
    lines += ["", "| figure | baseline | latest | change |", "|---|---:|---:|---:|"]
    for label, old, new, better in compared(latest, baseline):
        if old is None or new is None:
            lines.append(f"| {label} | {fmt(old)} | {fmt(new)} | |")
            continue
        lines.append(f"| {label} | {fmt(old)} | {fmt(new)} | {change_cell(old, new, better)} |")
    return "\n".join(lines)


# ── main ────────────────────────────────────────────────────────────────────────────────────────


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The run log at scale: writer throughput and query times.")
    parser.add_argument("--quick", action="store_true", help="50,000 runs instead of 1,000,000")
    parser.add_argument("--runs", type=int, help="runs to write (default 1,000,000; quick 50,000)")
    parser.add_argument("--database", choices=[*DATABASES, "both"], default="both")
    parser.add_argument(
        "--batch-sizes", help="writer batch sizes, taking turns (default: SQLite 500,5000; PostgreSQL 500)"
    )
    parser.add_argument("--segment", type=int, help="runs per writer start/stop (default runs / 20)")
    parser.add_argument(
        "--live-runs", type=int, help="runs written live after the queries (default runs / 10)"
    )
    parser.add_argument("--repetitions", type=int, default=30, help="timed calls per query (default 30)")
    parser.add_argument(
        "--drop-index",
        action="append",
        default=[],
        metavar="NAME",
        help="drop this index first (experiments)",
    )
    parser.add_argument(
        "--postgres-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="start PostgreSQL with this setting too, e.g. shared_buffers=4GB (repeatable)",
    )
    parser.add_argument("--no-explain", dest="explain", action="store_false", help="skip the query plans")
    parser.add_argument("--save-baseline", action="store_true", help="also write the baseline")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--baseline", type=Path, default=RESULTS / "run_log_baseline.json")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    runs = args.runs or (50_000 if args.quick else 1_000_000)
    return Plan(
        runs=runs,
        segment=args.segment or max(1000, runs // 20),
        batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")) if args.batch_sizes else None,
        repetitions=max(1, args.repetitions),
        quick=args.quick,
        live_runs=args.live_runs or max(1000, runs // 10),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.git_state = git_state()
    plan = make_plan(args)
    kinds = DATABASES if args.database == "both" else (args.database,)
    idle = background_load()
    print(
        f"promptdeck run log at scale: {plan.runs:,} runs on {', '.join(kinds)}; other load now {idle} cores"
    )
    if idle > 0.2:
        print("warning: other processes keep the machine busy: figures will be slower and noisier")

    def log(line: str) -> None:
        print(line, flush=True)

    baseline = json.loads(args.baseline.read_text()) if args.baseline.exists() else {}
    for kind in kinds:
        report = measure(kind, plan, args, log)
        report["meta"]["background_load_cores"] = idle
        report["goals"] = goals(report)
        output = args.output_dir / f"run_log_{kind}_latest.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print()
        print(markdown(report))
        print()
        print(compare(report, baseline.get(kind, {})))
        print(f"\nwritten: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}\n")
        if args.save_baseline:
            baseline[kind] = report
            args.baseline.write_text(json.dumps(baseline, indent=2, default=str) + "\n")
            print(f"baseline saved: {args.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
