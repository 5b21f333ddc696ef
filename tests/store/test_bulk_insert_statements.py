"""The run writer's statements have a few texts, whatever its batches' lengths: the drivers keep
the texts they meet prepared, per connection (SQLite the last 128, up to 3 MB each), so a text per
batch length grew a busy server's memory by hundreds of MB. And every run is still written."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import new_id
from promptdeck.store import bulk_insert as bulk_module
from promptdeck.store.bulk_insert import chunk_lengths
from promptdeck.store.run_writer import RunWriter
from promptdeck.store.tables import end_users, run_metadata, runs, usage_latency_bins, usage_rollups
from tests.support.run_records import usage_run, write_runs

AT = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
MOST_RUNS = 16  # rows of `runs` in one SQLite statement here: the limit is lowered to make it so
LENGTHS = [*range(1, 41), 70, 100]  # batch lengths, under and over MOST_RUNS
TABLES = (runs, run_metadata, usage_rollups, usage_latency_bins, end_users)


@pytest.mark.parametrize("most", [1, 2, 3, 16, 885, 1724])
def test_a_batch_is_cut_into_the_largest_chunk_then_powers_of_two(most: int) -> None:
    seen: set[int] = set()
    for rows in range(3 * most + 70):
        lengths = chunk_lengths(rows, most)
        assert sum(lengths) == rows
        assert lengths == sorted(lengths, reverse=True)
        seen |= set(lengths)
    assert seen <= {most} | {2**k for k in range(most.bit_length()) if 2**k < most}
    assert len(seen) <= 1 + math.ceil(math.log2(most))


def test_a_sqlite_statement_takes_at_most_256_rows_however_narrow_they_are() -> None:
    """Under SQLite's parameter limit a narrow table's statement would take thousands of rows,
    and a prepared statement's memory grows with its rows (bench/README.md, "Memory")."""
    dialect = sa.create_engine("sqlite://").dialect
    width = len(run_metadata.columns)
    assert bulk_module.SQLITE_MAX_PARAMETERS // width > 1000  # the parameter limit alone allows more
    rows = [(f"run{i}", "key", "ws", AT, f"v{i}", None) for i in range(700)]
    assert len(rows[0]) == width
    statements = bulk_module.bound(dialect, run_metadata, rows)
    assert [len(parameters) // width for _sql, parameters in statements] == [256, 256, 128, 32, 16, 8, 4]
    assert sum(len(parameters) for _sql, parameters in statements) == 700 * width


async def test_batches_of_many_lengths_make_few_statement_texts_and_write_every_run(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_module, "SQLITE_MAX_PARAMETERS", MOST_RUNS * len(runs.columns))
    texts: dict[tuple[str, ...], set[str]] = defaultdict(set)  # by the tables a statement inserts into

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO" in statement:
            texts[tuple(re.findall(r"INSERT INTO (\w+)", statement))].add(statement)

    workspace_id = new_id()
    written = []
    sa.event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        for batch, length in enumerate(LENGTHS):
            records = [
                usage_run(
                    workspace_id,
                    created_at=AT + timedelta(minutes=batch, milliseconds=i),
                    end_user=f"u{i}",
                    metadata={"k": f"v{i}"},
                    duration_ms=float(10 + 37 * i),  # more latency bins in longer batches
                )
                for i in range(length)
            ]
            writer = await write_runs(engine, records, RunWriter(engine, batch_size=length))
            assert (writer.metrics.batches, writer.metrics.failed) == (1, 0)  # one batch, this long
            written += records
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", seen)

    if engine.dialect.name == "postgresql":  # one unnest per table, whatever the length
        assert all(len(found) == 1 for found in texts.values()), texts.keys()
        assert len(texts) <= 4
    else:
        for table in TABLES:
            most = bulk_module.sqlite_rows_per_statement(len(table.columns))
            found = texts[(table.name,)]
            assert 1 <= len(found) <= 1 + math.ceil(math.log2(most)), (table.name, len(found))
        assert len(texts[("runs",)]) <= 5  # one text per length would be 16 here

    total = len(written)
    async with engine.connect() as conn:
        stored = {
            r.id: r for r in await conn.execute(sa.select(runs).where(runs.c.workspace_id == workspace_id))
        }
        metadata = (
            await conn.execute(sa.select(sa.func.count()).where(run_metadata.c.workspace_id == workspace_id))
        ).scalar()
        counted = dict(
            (
                await conn.execute(
                    sa.select(usage_rollups.c.dimension, sa.func.sum(usage_rollups.c.runs))
                    .where(usage_rollups.c.workspace_id == workspace_id)
                    .group_by(usage_rollups.c.dimension)
                )
            ).all()
        )
        binned = (
            await conn.execute(
                sa.select(sa.func.sum(usage_latency_bins.c.runs)).where(
                    usage_latency_bins.c.workspace_id == workspace_id, usage_latency_bins.c.dimension == "all"
                )
            )
        ).scalar()
        users = {
            r.end_user: r.runs
            for r in await conn.execute(sa.select(end_users).where(end_users.c.workspace_id == workspace_id))
        }
    assert set(stored) == {r.id for r in written}
    for record in written[::97]:
        row = stored[record.id]
        assert (row.end_user, row.duration_ms, row.created_at) == (
            record.end_user,
            record.duration_ms,
            record.created_at,
        )
        assert row.metadata == record.metadata
    assert metadata == total
    assert counted["all"] == counted["user"] == counted["metakey"] == binned == total
    assert users == {f"u{i}": sum(1 for n in LENGTHS if i < n) for i in range(max(LENGTHS))}
