"""The run writer leaves the event loop to the requests it serves (issue 20, "a flat p99"): a
batch's Python work (rows, JSON encoding, rollup sums, statements) is done a few runs at a time
between turns of the loop. Measured as shares of the loop thread's own CPU time, so another
process's load cannot make the test fail; every run is still findable at once, then written,
whole and in order."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord, new_id
from promptdeck.store.run_writer import RunWriter
from promptdeck.store.tables import runs
from tests.support.run_records import usage_run

AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BATCH = 2_000
LONGEST_SHARE = 0.1  # of a batch's preparation, the most one turn of the loop may hold


def a_batch(workspace_id: str) -> list[RunRecord]:
    """Runs with what takes encoding: inputs, messages, metadata, attempts."""
    made = []
    for i in range(BATCH):
        record = usage_run(workspace_id, created_at=AT + timedelta(milliseconds=i), end_user=f"u{i % 7}")
        record.inputs = {"text": f"summarize paragraph {i} " * 8, "tone": "plain"}
        record.messages = [{"role": "user", "content": f"paragraph {i} " * 20}]
        record.metadata = {"team": f"t{i % 3}", "feature": "summary"}
        record.attempts = [{"provider": "openai", "status": "success", "duration_ms": 12.5}]
        made.append(record)
    return made


async def test_a_batch_is_prepared_a_few_runs_per_turn_of_the_loop(engine: AsyncEngine) -> None:
    writer = RunWriter(engine)
    stretches: list[float] = []  # the loop thread's CPU time between two turns of the ticker
    preparing = True

    async def ticker() -> None:
        last = time.thread_time()
        while preparing:
            await asyncio.sleep(0)
            now = time.thread_time()
            stretches.append(now - last)
            last = now

    records = a_batch(new_id())
    await writer._prepare(records[:1])  # statements compiled once per process, not per batch
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.thread_time()
    prepared = await writer._prepare(records)
    whole = time.thread_time() - started
    preparing = False
    await ticking

    assert prepared.runs == BATCH
    assert len(stretches) >= BATCH // 50  # the loop had a turn every few runs
    longest = max(stretches)
    assert longest < LONGEST_SHARE * whole, f"one turn held {longest / whole:.0%} of the batch's preparation"


async def test_a_batch_prepared_in_slices_is_written_whole_and_in_order(engine: AsyncEngine) -> None:
    workspace_id = new_id()
    records = a_batch(workspace_id)
    writer = RunWriter(engine, batch_size=BATCH, flush_seconds=1)
    writer.start()
    for record in records:
        await writer.put(record)
    assert all(writer.pending_run_by_request_id(r.request_id) is r for r in records)  # findable at once
    await writer.stop()

    assert (writer.metrics.written, writer.metrics.failed, writer.metrics.batches) == (BATCH, 0, 1)
    assert len(writer.pending) == 0
    async with engine.connect() as conn:
        query = sa.select(runs.c.request_id, runs.c.inputs).where(runs.c.workspace_id == workspace_id)
        stored = (await conn.execute(query.order_by(runs.c.created_at))).all()
    assert [row.request_id for row in stored] == [r.request_id for r in records]  # every run, in order
    assert [row.inputs for row in stored] == [r.inputs for r in records]  # each slice's encoding kept
