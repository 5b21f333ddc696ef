"""Usage rollups as the run writer and feedback keep them, on SQLite and PostgreSQL: the sums of
every dimension, latency bins, end users, metadata caps, two writers adding to the same hour at
once, and the migration's backfill of runs written before it (which must agree with the writer)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.latency_histogram import bin_of
from promptdeck.domain.runs import ERROR, RunRecord, new_id
from promptdeck.store import usage_rollups as rollups_module
from promptdeck.store.database import MIGRATIONS, create_engine, migrate, normalize_url
from promptdeck.store.feedback import FeedbackStore
from promptdeck.store.run_metadata import metadata_rows
from promptdeck.store.run_writer import RunWriter
from promptdeck.store.tables import (
    END_USER_COUNTERS,
    USAGE_COUNTERS,
    end_users,
    feedback,
    run_metadata,
    runs,
    usage_latency_bins,
    usage_rollups,
)
from tests.support.run_records import usage_run, write_runs

HOUR = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEXT = HOUR + timedelta(hours=1)


class Store:
    def __init__(self, url: str, db: AsyncEngine | None = None) -> None:
        self.url = url
        self.db = db if db is not None else create_engine(url)  # the migration test makes its own
        self.workspace_id = new_id()

    def record(self, **fields: Any) -> RunRecord:
        fields.setdefault("created_at", HOUR + timedelta(minutes=5))
        return usage_run(self.workspace_id, **fields)

    async def write(self, records: list[RunRecord], writer: RunWriter | None = None) -> RunWriter:
        return await write_runs(self.db, records, writer)

    async def usage(self) -> dict[tuple[str, datetime, str], dict[str, Any]]:
        """(dimension, hour, value) -> counters, of this workspace."""
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(usage_rollups).where(usage_rollups.c.workspace_id == self.workspace_id)
            )
            return {
                (r.dimension, r.bucket_start, r.value): {n: r._mapping[n] for n in USAGE_COUNTERS}
                for r in rows
            }

    async def bins(self) -> dict[tuple[str, datetime, str], dict[int, int]]:
        found: dict[tuple[str, datetime, str], dict[int, int]] = {}
        async with self.db.connect() as conn:
            for r in await conn.execute(
                sa.select(usage_latency_bins).where(usage_latency_bins.c.workspace_id == self.workspace_id)
            ):
                found.setdefault((r.dimension, r.bucket_start, r.value), {})[r.bin] = r.runs
        return found

    async def users(self) -> dict[str, dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(end_users).where(end_users.c.workspace_id == self.workspace_id)
            )
            return {r.end_user: dict(r._mapping) for r in rows}


@pytest.fixture
def store(database_url: str, engine: AsyncEngine) -> Store:
    return Store(database_url, engine)


def counters(**given: Any) -> dict[str, Any]:
    return {name: given.get(name, 0) for name in USAGE_COUNTERS}


async def test_each_dimension_sums_its_runs_by_hour(store: Store) -> None:
    anns_run: dict[str, Any] = {
        "end_user": "ann",
        "metadata": {"env": "prod", "tier": "gold"},
        "input_tokens": 10,
        "cached_input_tokens": 2,
        "output_tokens": 5,
        "reasoning_tokens": 1,
        "cost": 0.5,
        "duration_ms": 100.0,
        "ttft_ms": 20.0,
    }
    first = store.record(**anns_run)
    failed = store.record(
        variant="beta",
        version_number=2,
        end_user="bob",
        metadata={"env": "dev"},
        input_tokens=20,
        output_tokens=10,
        duration_ms=300.0,
        status=ERROR,
        created_at=HOUR,
    )
    unresolved = store.record(
        deployment="gamma",
        variant=None,
        version_number=None,
        model=None,
        provider=None,
        duration_ms=50.0,
        metadata={"env": "x" * 65},  # too long to roll up: only counted as carrying the key
        created_at=NEXT + timedelta(minutes=30),
    )
    last = store.record(**anns_run, created_at=NEXT - timedelta(microseconds=1))  # the same, later
    await store.write([first, failed, unresolved, last])
    pair = counters(
        runs=2,
        input_tokens=20,
        cached_input_tokens=4,
        output_tokens=10,
        reasoning_tokens=2,
        cost=1.0,
        latency_ms_sum=200.0,
        ttft_ms_sum=40.0,
        ttft_count=2,
    )
    lone_failure = counters(runs=1, errors=1, input_tokens=20, output_tokens=10, latency_ms_sum=300.0)
    alone = counters(runs=1, latency_ms_sum=50.0)
    hour_total = {k: pair[k] + lone_failure[k] for k in USAGE_COUNTERS}
    expected = {
        ("all", HOUR, ""): hour_total,
        ("all", NEXT, ""): alone,
        ("deployment", HOUR, "alpha"): hour_total,
        ("deployment", NEXT, "gamma"): alone,
        ("variant", HOUR, "alpha/default"): pair,
        ("variant", HOUR, "alpha/beta"): lone_failure,
        ("variant", NEXT, ""): alone,
        ("version", HOUR, "alpha@v1"): pair,
        ("version", HOUR, "alpha@v2"): lone_failure,
        ("version", NEXT, ""): alone,
        ("model", HOUR, "openai/a"): hour_total,
        ("model", NEXT, ""): alone,
        ("provider", HOUR, "openai"): hour_total,
        ("provider", NEXT, ""): alone,
        ("user", NEXT, ""): alone,
        ("user", HOUR, "ann"): pair,
        ("user", HOUR, "bob"): lone_failure,
        ("meta:env", HOUR, "prod"): pair,
        ("meta:env", HOUR, "dev"): lone_failure,
        ("meta:tier", HOUR, "gold"): pair,
        ("metakey", HOUR, "env"): hour_total,
        ("metakey", HOUR, "tier"): pair,
        ("metakey", NEXT, "env"): alone,
    }
    assert await store.usage() == expected
    bins = await store.bins()
    assert set(bins) == {key for key in expected if key[0] != "user"}  # no latency bins per end user
    assert bins["all", HOUR, ""] == {bin_of(100.0): 2, bin_of(300.0): 1}
    assert bins["metakey", NEXT, "env"] == {bin_of(50.0): 1}
    users = await store.users()
    assert set(users) == {"ann", "bob"}  # a run without an end user is nobody's
    assert users["ann"]["first_seen"] == first.created_at and users["ann"]["last_seen"] == last.created_at
    assert {n: users["ann"][n] for n in END_USER_COUNTERS} == {
        "runs": 2,
        "errors": 0,
        "input_tokens": 20,
        "output_tokens": 10,
        "cost": 1.0,
    }
    assert {n: users["bob"][n] for n in END_USER_COUNTERS} == {
        "runs": 1,
        "errors": 1,
        "input_tokens": 20,
        "output_tokens": 10,
        "cost": 0.0,
    }
    # A later batch adds to the same rows, and moves an end user's first and last times.
    earlier = store.record(end_user="ann", created_at=HOUR - timedelta(days=1), cost=0.25)
    await store.write([earlier, store.record(end_user="ann", created_at=NEXT + timedelta(hours=5))])
    ann = (await store.users())["ann"]
    assert ann["first_seen"] == earlier.created_at and ann["last_seen"] == NEXT + timedelta(hours=5)
    assert (ann["runs"], ann["cost"]) == (4, 1.25)
    assert (await store.usage())["all", HOUR, ""] == hour_total  # other hours: other rows


async def test_metadata_past_the_caps_counts_only_under_its_key(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups_module, "META_KEYS_PER_HOUR", 2)
    monkeypatch.setattr(rollups_module, "META_VALUES_PER_HOUR", 3)
    records = [store.record(metadata={"trace": f"t{i}", "env": "prod"}) for i in range(5)]
    records.append(store.record(metadata={"third": "x"}))  # a third key in the hour: not rolled up
    records.append(store.record(metadata={"trace": "t9"}, created_at=NEXT))  # a new hour: room again
    await store.write(records)
    usage = await store.usage()
    assert {v for (d, h, v) in usage if d == "meta:trace" and h == HOUR} == {"t0", "t1", "t2"}
    assert usage["metakey", HOUR, "trace"]["runs"] == 5
    assert usage["meta:env", HOUR, "prod"]["runs"] == 5
    assert not any(d in ("meta:third", "metakey") and v == "third" for (d, h, v) in usage)
    assert usage["meta:trace", NEXT, "t9"]["runs"] == 1
    assert usage["all", HOUR, ""]["runs"] == 6


async def test_two_writers_adding_to_the_same_hour_at_once(store: Store) -> None:
    """Two writers (as on two replicas: separate engines) write the same rows concurrently in
    many small transactions; every run counts exactly once."""
    other = create_engine(store.url)
    try:
        users = [f"user-{i}" for i in range(7)]

        def batch(offset: int) -> list[RunRecord]:
            return [
                store.record(
                    end_user=users[i % len(users)],
                    metadata={"env": ("prod", "dev")[i % 2]},
                    input_tokens=3,
                    output_tokens=2,
                    cost=0.001,
                    duration_ms=10.0 + i,
                    created_at=HOUR + timedelta(seconds=offset + i),
                )
                for i in range(300)
            ]

        writers = [RunWriter(store.db, batch_size=7, flush_seconds=0.001), RunWriter(other, batch_size=7)]
        done = await asyncio.gather(*(store.write(batch(n), w) for n, w in enumerate(writers)))
        assert [w.metrics.failed for w in done] == [0, 0] and [w.metrics.written for w in done] == [300, 300]
    finally:
        await other.dispose()
    usage = await store.usage()
    assert usage["all", HOUR, ""]["runs"] == 600
    assert usage["all", HOUR, ""]["input_tokens"] == 1800
    assert usage["all", HOUR, ""]["cost"] == pytest.approx(0.6)
    assert usage["meta:env", HOUR, "prod"]["runs"] == usage["meta:env", HOUR, "dev"]["runs"] == 300
    assert sum(c["runs"] for (d, _, _), c in usage.items() if d == "user") == 600
    assert sum((await store.bins())["deployment", HOUR, "alpha"].values()) == 600
    found = await store.users()
    assert sum(u["runs"] for u in found.values()) == 600 and set(found) == set(users)
    async with store.db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(runs))).scalar_one() == 600


async def test_feedback_adds_to_its_runs_rows_whether_written_or_still_queued(store: Store) -> None:
    stored = store.record(end_user="ann", metadata={"env": "prod"}, created_at=HOUR)
    await store.write([stored])
    queued = store.record(variant="beta", end_user="bob", created_at=NEXT)
    writer = RunWriter(store.db)  # not started: the run waits in its queue
    await writer.put(queued)
    feedback_store = FeedbackStore(store.db, writer.pending_run)
    await feedback_store.add(
        store.workspace_id,
        [
            {"run_id": stored.id, "quality": 0.5, "thumbs": "up"},
            {"run_id": stored.id, "quality": 1.0},
            {"run_id": stored.id, "text": "a correction, no score"},
            {"run_id": queued.id, "thumbs": "down", "quality": 0.0},
            {"run_id": new_id(), "quality": 1.0},  # no such run: stored, not rolled up
        ],
    )
    usage = await store.usage()
    three = {"feedback_count": 3, "feedback_scored": 2, "feedback_score_sum": 1.5, "thumbs_up": 1}
    for key in (
        ("all", HOUR, ""),
        ("variant", HOUR, "alpha/default"),
        ("user", HOUR, "ann"),
        ("meta:env", HOUR, "prod"),
        ("metakey", HOUR, "env"),
    ):
        assert {k: usage[key][k] for k in three} == three, key
    assert usage["variant", NEXT, "alpha/beta"] == counters(
        feedback_count=1, feedback_scored=1, thumbs_down=1
    )
    await store.write([], writer)  # the queued run is written now: its counters join the row
    assert usage["variant", NEXT, "alpha/beta"]["runs"] == 0
    assert (await store.usage())["variant", NEXT, "alpha/beta"]["runs"] == 1
    assert (await store.usage())["variant", NEXT, "alpha/beta"]["thumbs_down"] == 1


async def test_a_run_the_rollups_cannot_take_is_still_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in summing one run must cost that run its rollups, not the batch its place in the log."""
    records = [store.record(end_user=f"u{i}") for i in range(5)]
    broken = records[2].id
    add_runs = rollups_module.RollupBatch.add_runs

    def failing(batch: Any, runs_given: Any, *rest: Any) -> None:
        if any(r.id == broken for r in runs_given):
            raise ValueError("cannot sum this run")
        add_runs(batch, runs_given, *rest)

    monkeypatch.setattr(rollups_module.RollupBatch, "add_runs", failing)
    writer = await store.write(records)
    assert (writer.metrics.written, writer.metrics.failed) == (5, 0)
    assert (await store.usage())["all", HOUR, ""]["runs"] == 4
    assert set(await store.users()) == {"u0", "u1", "u3", "u4"}


# ── the migration's backfill ──────────────────────────────────────────────────


def upgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = normalize_url(url)
    command.upgrade(config, revision)


def varied_runs(workspace_id: str) -> list[RunRecord]:
    runs_made = []
    for i in range(60):
        runs_made.append(
            RunRecord(
                workspace_id=workspace_id,
                dialect="fetchhive",
                deployment=("alpha", "beta_2")[i % 2],
                streamed=False,
                variant=None if i % 11 == 0 else ("default", "canary")[i % 3 == 0],
                version_number=None if i % 11 == 0 else 1 + i % 3,
                model=None if i % 13 == 0 else f"openai/m{i % 2}",
                provider=None if i % 13 == 0 else "openai",
                input_tokens=i,
                cached_input_tokens=i // 3,
                output_tokens=2 * i,
                reasoning_tokens=i % 4,
                cost=None if i % 5 == 0 else i / 1000,
                duration_ms=[0.2, 1.0, 1.2, 57.3, 999.9, 2e6][i % 6] + i,
                ttft_ms=None if i % 4 == 0 else 10.0 + i,
                status=ERROR if i % 7 == 0 else "success",
                end_user=None if i % 6 == 0 else ("" if i % 17 == 0 else f"u{i % 5}"),
                metadata={"env": ("prod", "dev", "x" * 70)[i % 3], "n": i % 4, "k" * 70: 1}
                if i % 2
                else None,
                created_at=HOUR + timedelta(minutes=7 * i, microseconds=i),
            )
        )
    return runs_made


def varied_feedback(records: list[RunRecord]) -> list[dict[str, Any]]:
    return [
        {"run_id": r.id, "quality": (None, 0.25, 1.0)[i % 3], "thumbs": (None, "up", "down")[i % 3]}
        for i, r in enumerate(records[::4])
    ]


async def test_the_migration_backfills_what_the_writer_would_have_written(
    database_url: str, postgres_or_sqlite_second_url: str
) -> None:
    """Runs (with metadata and feedback) stored before migration 0007 are rolled up by it
    exactly as the writer and the feedback store roll up the same runs after it."""
    workspace_id = new_id()
    records = varied_runs(workspace_id)
    items = varied_feedback(records)

    await asyncio.to_thread(upgrade, database_url, "0006")
    before = Store(database_url)
    before.workspace_id = workspace_id
    async with before.db.begin() as conn:  # as the writer of 0006 stored them
        await conn.execute(runs.insert(), [_as_0006_row(r) for r in records])
        await conn.execute(run_metadata.insert(), [m for r in records for m in metadata_rows(r)])
        await conn.execute(
            feedback.insert(),
            [{"id": new_id(), "workspace_id": workspace_id, "created_at": HOUR, **item} for item in items],
        )
    await before.db.dispose()
    await asyncio.to_thread(upgrade, database_url, "head")
    backfilled = Store(database_url)
    backfilled.workspace_id = workspace_id

    await asyncio.to_thread(migrate, postgres_or_sqlite_second_url)
    written = Store(postgres_or_sqlite_second_url)
    written.workspace_id = workspace_id
    await written.write(records)
    await FeedbackStore(written.db).add(workspace_id, items)
    try:
        for read in (Store.usage, Store.bins, Store.users):
            expected, found = await read(written), await read(backfilled)
            assert set(found) == set(expected), read
            assert _rounded(found) == _rounded(expected), read
        assert len(await backfilled.usage()) > 50
    finally:
        await backfilled.db.dispose()
        await written.db.dispose()


RUN_COLUMNS_AFTER_0006 = ("session_id", "trace_id", "cache_hit", "saved_cost")  # migration 0012


def _as_0006_row(record: RunRecord) -> dict[str, Any]:
    return {k: v for k, v in record.as_row().items() if k not in RUN_COLUMNS_AFTER_0006}


def _rounded(found: Any) -> Any:
    """Floats to 9 significant digits: SQL and Python add them up in different orders."""
    if isinstance(found, dict):
        return {k: _rounded(v) for k, v in found.items()}
    return float(f"{found:.9g}") if isinstance(found, float) else found


@pytest.fixture
def postgres_or_sqlite_second_url(database_url: str, tmp_path: Any, request: pytest.FixtureRequest) -> str:
    """Another empty database of the same kind as `database_url`."""
    if database_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"
    return str(request.getfixturevalue("postgres").new_database())
