"""The run writer survives its own crashes, on SQLite and PostgreSQL: a crash of its loop or of a
batch's write is logged, recovered from, and every run put is written exactly once; a `put` never
waits forever, even once the writer has ended; pending runs are found by run id, request id and
external id without a scan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord, new_id
from promptdeck.store.run_writer import PreparedBatch, RunWriter
from promptdeck.store.tables import runs
from tests.support.run_records import usage_run

AT = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
RUNS = 2_000
DEADLINE = 60  # seconds: a writer that hangs fails the test instead of the suite


class Collected(logging.Handler):
    """The writer's log records (its logger may not propagate to the root, where caplog listens)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]


@pytest.fixture
def writer_log() -> Iterator[Collected]:
    logger = logging.getLogger("promptdeck.writer")
    handler, level = Collected(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def made(workspace_id: str, count: int) -> list[RunRecord]:
    return [usage_run(workspace_id, created_at=AT + timedelta(milliseconds=i)) for i in range(count)]


async def stored_ids(engine: AsyncEngine, workspace_id: str) -> list[str]:
    """Every stored run's id, duplicates included (there must be none)."""
    async with engine.connect() as conn:
        return list(
            (await conn.execute(sa.select(runs.c.id).where(runs.c.workspace_id == workspace_id))).scalars()
        )


async def put_all(writer: RunWriter, records: list[RunRecord], then: Any = None) -> None:
    """Put the runs as requests would, yielding between them; `then()` is called halfway."""
    for position, record in enumerate(records):
        if position == len(records) // 2 and then is not None:
            then()
        await writer.put(record)
        if position % 50 == 0:
            await asyncio.sleep(0)


async def test_a_crash_of_the_loop_mid_load_is_logged_and_recovered(
    engine: AsyncEngine, writer_log: Collected
) -> None:
    """The loop raises once while preparing a batch, mid-load: logged with its traceback, the loop
    restarts, and every run is stored exactly once — those it held when it crashed included."""
    workspace_id = new_id()
    records = made(workspace_id, RUNS)
    writer = RunWriter(engine, batch_size=100, flush_seconds=0.01)
    prepare = writer._prepared
    crashes = 0

    async def crashing_once(batch: list[RunRecord]) -> tuple[list[RunRecord], PreparedBatch]:
        nonlocal crashes
        if crashes == 0 and len(await stored_ids(engine, workspace_id)) > 0:
            crashes += 1
            raise RuntimeError("the loop crashed")
        return await prepare(batch)

    writer._prepared = crashing_once  # type: ignore[method-assign]
    writer.start()
    await asyncio.wait_for(put_all(writer, records), DEADLINE)
    await asyncio.wait_for(writer.stop(), DEADLINE)
    ids = await stored_ids(engine, workspace_id)
    assert crashes == 1 and writer.metrics.restarts == 1
    assert len(ids) == RUNS and set(ids) == {r.id for r in records}
    assert (writer.metrics.written, writer.metrics.failed) == (RUNS, 0) and not writer.pending
    crash = [r for r in writer_log.errors() if "loop crashed" in r.getMessage()]
    assert crash and crash[0].exc_info is not None and "the loop crashed" in str(crash[0].exc_info[1])


async def test_the_loop_cancelled_mid_load_is_restarted(engine: AsyncEngine, writer_log: Collected) -> None:
    """Cancelling the loop's task (not the writer's) is a crash like any other."""
    workspace_id = new_id()
    records = made(workspace_id, RUNS)
    writer = RunWriter(engine, batch_size=100, flush_seconds=0.01)
    writer.start()

    def cancel_the_loop() -> None:
        assert writer._loop is not None
        writer._loop.cancel()

    await asyncio.wait_for(put_all(writer, records, then=cancel_the_loop), DEADLINE)
    await asyncio.wait_for(writer.stop(), DEADLINE)
    ids = await stored_ids(engine, workspace_id)
    assert writer.metrics.restarts == 1
    assert len(ids) == RUNS and set(ids) == {r.id for r in records} and not writer.pending
    assert any("cancelled" in r.getMessage() for r in writer_log.errors())


async def test_a_crashed_write_is_logged_and_its_runs_written_again_then_split(
    engine: AsyncEngine, writer_log: Collected
) -> None:
    """A batch's write raises (a crash, not a refused insert): the exception is logged, not left
    unretrieved in its task; the batch is written again, and as it crashes again (one run
    crashes every write it is in), one run at a time: only that run is lost, counted failed."""
    workspace_id = new_id()
    records = made(workspace_id, 300)
    poisoned = records[5]
    writer = RunWriter(engine, batch_size=100, flush_seconds=0.01)
    write = writer._write

    async def crashing(batch: list[RunRecord], prepared: PreparedBatch) -> None:
        if poisoned in batch:
            raise RuntimeError(f"cannot write {len(batch)} run(s)")
        await write(batch, prepared)

    writer._write = crashing  # type: ignore[method-assign]
    writer.start()
    await asyncio.wait_for(put_all(writer, records), DEADLINE)
    await asyncio.wait_for(writer.flush(), DEADLINE)
    assert writer.metrics.crashed_writes == 1 and (writer.metrics.written, writer.metrics.failed) == (299, 1)
    await asyncio.wait_for(writer.stop(), DEADLINE)
    ids = await stored_ids(engine, workspace_id)
    assert len(ids) == 299 and set(ids) == {r.id for r in records} - {poisoned.id}
    assert not writer.pending
    logged = [str(r.exc_info[1]) for r in writer_log.errors() if r.exc_info]
    assert any(m.startswith("cannot write") and m != "cannot write 1 run(s)" for m in logged)  # a batch
    assert logged[-1] == "cannot write 1 run(s)"  # the poisoned run's, alone
    assert any(poisoned.request_id in r.getMessage() for r in writer_log.errors())


async def test_a_put_after_stop_writes_its_run_at_once(engine: AsyncEngine, writer_log: Collected) -> None:
    """Once stopped the writer takes no more runs into its queue, where nothing would write them:
    `put` writes the run itself, and says so once."""
    workspace_id = new_id()
    writer = RunWriter(engine, batch_size=100, flush_seconds=0.01)
    writer.start()
    await writer.stop()
    late = made(workspace_id, 3)
    for record in late:
        await asyncio.wait_for(writer.put(record), DEADLINE)
    assert sorted(await stored_ids(engine, workspace_id)) == sorted(r.id for r in late)
    assert not writer.pending and writer.metrics.written == 3
    warnings = [r for r in writer_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not running" in warnings[0].getMessage()


async def test_a_put_waiting_for_room_when_the_writer_dies_does_not_wait_forever(
    engine: AsyncEngine, writer_log: Collected
) -> None:
    """The writer is stuck on a batch, the queue fills, a `put` waits for room; then the writer's
    task is cancelled for good. The waiting `put` writes its run itself, and `stop()` writes the
    runs the dead writer left: all stored, once."""
    workspace_id = new_id()
    records = made(workspace_id, 4)
    writer = RunWriter(engine, batch_size=1, flush_seconds=0.01, queue_size=2)
    prepare, stuck, held = writer._prepared, asyncio.Event(), asyncio.Event()

    async def stuck_once(batch: list[RunRecord]) -> tuple[list[RunRecord], PreparedBatch]:
        if not held.is_set():
            held.set()
            await stuck.wait()
        return await prepare(batch)

    writer._prepared = stuck_once  # type: ignore[method-assign]
    writer.start()
    for record in records[:3]:  # one taken by the stuck loop, two fill the queue
        await writer.put(record)
        await held.wait()
    waiting = asyncio.create_task(writer.put(records[3]))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # backpressure, as before
    assert writer._task is not None
    writer._task.cancel()
    await asyncio.wait_for(waiting, DEADLINE)
    assert await stored_ids(engine, workspace_id) == [records[3].id]
    await asyncio.wait_for(writer.stop(), DEADLINE)
    ids = await stored_ids(engine, workspace_id)
    assert len(ids) == 4 and set(ids) == {r.id for r in records} and not writer.pending
    assert any("cancelled" in r.getMessage() for r in writer_log.errors())


async def test_pending_runs_are_found_by_run_id_request_id_and_external_id(engine: AsyncEngine) -> None:
    workspace_id, elsewhere = new_id(), new_id()
    plain, tagged, same_tag_elsewhere = made(workspace_id, 2) + made(elsewhere, 1)
    tagged.external_id = same_tag_elsewhere.external_id = "order-17"
    writer = RunWriter(engine, batch_size=100, flush_seconds=0.01)  # not started: runs wait
    for record in (plain, tagged, same_tag_elsewhere):
        await writer.put(record)
    assert writer.pending_run(plain.id) is plain and writer.pending_run(tagged.id) is tagged
    assert writer.pending_run_by_request_id(tagged.request_id) is tagged
    assert writer.pending_run_by_external_id(workspace_id, "order-17") is tagged
    assert writer.pending_run_by_external_id(elsewhere, "order-17") is same_tag_elsewhere
    assert writer.pending_run_by_external_id(workspace_id, "order-18") is None
    assert writer.pending_run("no-such-id") is None and writer.pending_run_by_request_id(plain.id) is None
    writer.start()
    await asyncio.wait_for(writer.stop(), DEADLINE)
    assert len(await stored_ids(engine, workspace_id)) == 2
    assert writer.pending_run(tagged.id) is None
    assert writer.pending_run_by_request_id(tagged.request_id) is None
    assert writer.pending_run_by_external_id(workspace_id, "order-17") is None
    assert not writer.pending
