"""What makes the run writer fast, checked for what it must keep: bulk inserts store exactly what
SQLAlchemy's own inserts store (JSON, NULLs, booleans, times) on SQLite and PostgreSQL, however
many statements SQLite needs and however many are joined into one on PostgreSQL; merges add up;
a run whose row cannot be made is left out alone; ids sort by time; the WAL checkpointer copies
the log; migration 0010's index and compression."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord, new_id, new_request_id
from promptdeck.store import bulk_insert as bulk_module
from promptdeck.store import usage_rollups as rollups_module
from promptdeck.store.bulk_insert import Merge, bound, execute, in_one
from promptdeck.store.database import AUTOCHECKPOINT_PAGES, create_engine, migrate
from promptdeck.store.run_writer import _RUN_ROW, BATCH_SIZES, RunWriter
from promptdeck.store.tables import end_users, run_metadata, runs, usage_rollups
from promptdeck.store.wal_checkpoints import WalCheckpointer
from tests.support.run_records import usage_run, write_runs

AT = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


def varied(workspace_id: str, count: int) -> list[RunRecord]:
    """Runs with every kind of value a row holds, NULLs included."""
    made = []
    for i in range(count):
        record = usage_run(workspace_id, created_at=AT + timedelta(seconds=i), end_user=f"u{i % 3}")
        record.inputs = {"text": f"hello {i}", "nested": {"list": [1, 2.5, None, "x"]}} if i % 2 else None
        record.messages = [{"role": "user", "content": f"ünïcode {i} 🙂"}]
        record.tool_calls = None
        record.attempts = [{"provider": "local", "ok": True}]
        record.metadata = {"env": "prod", "n": i} if i % 3 else None
        record.price_known = None if i % 4 == 0 else bool(i % 2)
        record.cost = None if i % 5 == 0 else i / 7
        record.ttft_ms = None
        record.external_id = f"ext-{i}" if i % 6 == 0 else None
        made.append(record)
    return made


async def stored(engine: AsyncEngine, workspace_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(runs).where(runs.c.workspace_id == workspace_id).order_by(runs.c.created_at)
        )
        return [dict(r._mapping) for r in rows]


async def test_bulk_inserts_store_what_sqlalchemy_stores(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same runs, written once by SQLAlchemy's insert and once in bulk (on SQLite in several
    statements: the parameter limit is lowered to force it), read back the same."""
    monkeypatch.setattr(bulk_module, "SQLITE_MAX_PARAMETERS", len(runs.columns) * 3)
    by_sqlalchemy, in_bulk = new_id(), new_id()
    expected = varied(by_sqlalchemy, 10)
    written = varied(in_bulk, 10)
    statements = bound(engine.dialect, runs, [_RUN_ROW(r) for r in written])
    if engine.dialect.name == "sqlite":
        assert len(statements) == 4  # 3 + 3 + 3 + 1 rows
    async with engine.begin() as conn:
        await conn.execute(runs.insert(), [r.as_row() for r in expected])
        await execute(conn, statements)

    def comparable(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in ("id", "request_id", "workspace_id")}

    mine, theirs = await stored(engine, in_bulk), await stored(engine, by_sqlalchemy)
    assert len(mine) == 10
    assert [comparable(r) for r in mine] == [comparable(r) for r in theirs]
    assert mine[1]["inputs"] == {"text": "hello 1", "nested": {"list": [1, 2.5, None, "x"]}}
    assert mine[0]["price_known"] is None and mine[1]["price_known"] is True
    assert mine[3]["created_at"] == AT + timedelta(seconds=3)


async def test_merges_add_up_and_keep_the_earliest_and_latest(engine: AsyncEngine) -> None:
    """end_users' merge, written twice in one statement on PostgreSQL (joined with a plain insert)."""
    workspace_id = new_id()
    merge = Merge(
        ("runs", "errors", "input_tokens", "output_tokens", "cost"), ("first_seen",), ("last_seen",)
    )

    def user_row(name: str, first: datetime, last: datetime, runs_: int) -> tuple[Any, ...]:
        return (workspace_id, name, first, last, runs_, 0, 10 * runs_, 1, 0.5)

    first = [user_row("ann", AT, AT + timedelta(hours=1), 2), user_row("bob", AT, AT, 1)]
    second = [user_row("ann", AT - timedelta(hours=1), AT, 3)]
    metadata_row = (new_id(), "k", workspace_id, AT, "v", None)
    async with engine.begin() as conn:
        await execute(conn, bound(engine.dialect, end_users, first, merge))
        joined = in_one(
            engine.dialect,
            [
                *bound(engine.dialect, run_metadata, [metadata_row]),
                *bound(engine.dialect, end_users, second, merge),
            ],
        )
        assert len(joined) == (1 if engine.dialect.name == "postgresql" else 2)
        await execute(conn, joined)
        found = {
            r.end_user: r
            for r in await conn.execute(sa.select(end_users).where(end_users.c.workspace_id == workspace_id))
        }
        assert (
            await conn.execute(
                sa.select(run_metadata.c.value_text).where(run_metadata.c.workspace_id == workspace_id)
            )
        ).scalar() == "v"
    ann = found["ann"]
    assert (ann.runs, ann.input_tokens, ann.output_tokens, ann.cost) == (5, 50, 2, 1.0)
    assert (ann.first_seen, ann.last_seen) == (AT - timedelta(hours=1), AT + timedelta(hours=1))
    assert found["bob"].runs == 1


async def test_a_run_whose_row_cannot_be_made_is_left_out_alone(engine: AsyncEngine) -> None:
    """A value its rows cannot take (a set in the metadata, whose rows hold each value as text)
    fails that run, not its batch, and the writer goes on writing. (What a JSON column cannot
    hold is stored marked instead: tests/store/test_unwritable_json.py.)"""
    workspace_id = new_id()
    records = [usage_run(workspace_id, created_at=AT + timedelta(seconds=i)) for i in range(6)]
    records[2].metadata = {"tags": {"a", "b"}}
    writer = RunWriter(engine, batch_size=50, flush_seconds=0.01)
    writer.start()
    for record in records:
        await writer.put(record)
    await writer.flush()
    later = usage_run(workspace_id, created_at=AT + timedelta(minutes=1))
    await writer.put(later)
    await writer.stop()
    assert (writer.metrics.written, writer.metrics.failed) == (6, 1)
    assert records[2].request_id not in writer.pending
    ids = {r["id"] for r in await stored(engine, workspace_id)}
    assert ids == {r.id for r in records if r is not records[2]} | {later.id}


def test_ids_sort_by_the_time_they_were_made() -> None:
    earlier, later = new_id(AT), new_id(AT + timedelta(milliseconds=1))
    assert len(earlier) == 32 and int(earlier, 16) >= 0
    assert earlier < later
    assert new_id(AT)[:12] == earlier[:12] and new_id(AT) != earlier  # same millisecond, still apart
    made = [new_id() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert new_request_id().startswith("req_") and len(new_request_id()) == 36


async def test_the_checkpointer_copies_the_log_into_the_database(tmp_path: Path) -> None:
    path = tmp_path / "promptdeck.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    checkpointer = WalCheckpointer(str(path), every_seconds=0.01)
    try:
        workspace_id = new_id()
        records = [usage_run(workspace_id, created_at=AT + timedelta(seconds=i)) for i in range(200)]
        await write_runs(engine, records, RunWriter(engine, batch_size=20, flush_seconds=0.01))
        async with engine.connect() as conn:  # the writer's commits left the log to the checkpointer
            pages = (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar()
        assert pages == AUTOCHECKPOINT_PAGES
        busy, logged, copied = await asyncio.to_thread(checkpointer.checkpoint)
        assert (busy, copied) == (0, logged) and logged > 0
        checkpointer.start()
        await asyncio.sleep(0.1)
        await checkpointer.stop()
        assert checkpointer.checkpoints >= 2
        with sqlite3.connect(path) as plain:  # every run is in the database file itself
            assert plain.execute("SELECT count(*) FROM runs").fetchone()[0] == 200
    finally:
        await engine.dispose()


async def test_migration_0010_indexes_only_external_ids_and_compresses_with_lz4(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            definition = (
                await conn.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_runs_workspace_external_id'"
                )
            ).scalar()
            compressed = (
                await conn.exec_driver_sql(
                    "SELECT attname FROM pg_attribute"
                    " WHERE attrelid = 'runs'::regclass AND attcompression = 'l'"
                )
            ).scalars()
            assert {"inputs", "messages", "output"} <= set(compressed)
        else:
            definition = (
                await conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'uq_runs_workspace_external_id'"
                )
            ).scalar()
    assert "UNIQUE" in str(definition).upper() and "external_id IS NOT NULL" in str(definition)


async def test_postgresql_writes_two_batches_at_once_and_loses_no_run(engine: AsyncEngine) -> None:
    """Batches in flight together share rollup rows (the same hour): every run is written once
    and counted once, whichever batch commits first."""
    workspace_id = new_id()
    writer = RunWriter(engine, batch_size=100, flush_seconds=0.01)
    assert writer.concurrent_batches == (2 if engine.dialect.name == "postgresql" else 1)
    records = [
        usage_run(workspace_id, created_at=AT + timedelta(milliseconds=i), end_user=f"u{i % 7}")
        for i in range(2000)
    ]
    await write_runs(engine, records, writer)
    assert (writer.metrics.written, writer.metrics.failed, writer.metrics.batches) == (2000, 0, 20)
    async with engine.connect() as conn:
        stored_runs = (
            await conn.execute(sa.select(sa.func.count()).where(runs.c.workspace_id == workspace_id))
        ).scalar()
        users = {
            r.end_user: r.runs
            for r in await conn.execute(sa.select(end_users).where(end_users.c.workspace_id == workspace_id))
        }
    assert stored_runs == 2000
    assert users == {f"u{i}": len(range(i, 2000, 7)) for i in range(7)}


async def test_a_backlog_is_written_in_batches_as_large_as_the_database_takes(engine: AsyncEngine) -> None:
    """By default a batch takes up to 5,000 queued runs on SQLite (its commits write whole pages:
    the more runs share them the better) and 500 on PostgreSQL."""
    workspace_id = new_id()
    writer = RunWriter(engine, flush_seconds=0.01)
    assert writer.batch_size == BATCH_SIZES[engine.dialect.name]
    records = [usage_run(workspace_id, created_at=AT + timedelta(milliseconds=i)) for i in range(6000)]
    for record in records:  # queued before the writer starts: a backlog
        await writer.put(record)
    await write_runs(engine, [], writer)
    assert writer.metrics.batches == {"sqlite": 2, "postgresql": 12}[engine.dialect.name]
    assert (writer.metrics.written, writer.metrics.failed) == (6000, 0)


async def test_a_run_whose_rollups_fail_halfway_costs_only_its_own(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after part of a batch's sums were added (in its metadata's) is summed again run
    by run: the other runs are counted once, the failing one not at all."""
    workspace_id = new_id()
    records = [usage_run(workspace_id, created_at=AT, metadata={"k": "ok"}) for _ in range(5)]
    records[2].metadata = {"k": "bad"}
    add_tagged = rollups_module.RollupBatch._add_tagged

    def failing(batch: Any, tagged: dict[Any, Any], *rest: Any) -> None:
        if any(tag[3] == "bad" for tag in tagged):
            raise ValueError("cannot sum this value")
        add_tagged(batch, tagged, *rest)

    monkeypatch.setattr(rollups_module.RollupBatch, "_add_tagged", failing)
    writer = await write_runs(engine, records)
    assert (writer.metrics.written, writer.metrics.failed) == (5, 0)
    async with engine.connect() as conn:
        counted = (
            await conn.execute(
                sa.select(usage_rollups.c.dimension, sa.func.sum(usage_rollups.c.runs))
                .where(usage_rollups.c.workspace_id == workspace_id)
                .group_by(usage_rollups.c.dimension)
            )
        ).all()
    assert dict(counted)["all"] == 4
    assert dict(counted)["deployment"] == 4
