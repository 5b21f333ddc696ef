"""Writes finished runs to the database in batches, off the request path.

A bounded queue gives backpressure (a full queue makes callers wait a little
instead of growing without bound); failed batches are retried, then split so
one bad row cannot sink the others; `stop()` drains everything. Each batch's usage rollups
(store/usage_rollups.py) are written in the batch's own transaction.

A batch is taken whole from what is queued, up to `batch_size`: at low load a batch is what
arrived within `flush_seconds`, at high load a full one, so the rollups' sums and the commits
are shared by more runs when it matters. That matters most on SQLite, whose commit writes
every page the transaction changed, whole: new entries of the indexes in random order (latency,
cost, customer or session ids) land on random pages, so a batch of 500 runs at a million wrote
17 pages a run and one of 5,000 ten (docs/performance.md), hence its larger default.

All the Python work of a batch (rows, their values encoded for the driver, rollup sums, the
statements) is done on the event loop while the batch before is being written, sixteen runs (or
one statement) at a time so that requests are served in between; the database then only runs
the ready statements. A worker thread was measured and did no better: while it runs Python, the
loop waits for the GIL (bench/README.md, "A flat p99").

Supervision. The loop taking batches off the queue runs as a task under a supervisor: if it
crashes (raises, or is cancelled by anything but `stop()`), the crash is logged at error level,
counted in `restarts`, and the loop is started again, at once the first time and after a pause
growing to a second if it keeps crashing; the runs it had taken off the queue are written
again. Each batch is written by a task of its own; if that task crashes (raises: a batch the
database refuses is not a crash, it is retried and then split, run by run, as always), the
exception is logged, counted in `crashed_writes`, and the batch's runs not yet written are
written again, as one batch, then one by one if that crashes too; a run whose write crashes on
its own is counted in `failed`. No crash loses a run silently, and none writes a run twice.

When the writer has ended (stopped, or its supervisor was cancelled), `put` does not queue a
run: it writes it at once, in the caller's task, one such write at a time, and logs a warning
the first time. A `put` waiting for room in a full queue when the writer ends writes its run
so too. So no `put` waits forever and none drops its run. Before `start()`, runs are queued for
the writer to write once started. `stop()` and `flush()` write whatever an ended writer left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord
from promptdeck.store.bulk_insert import Row, Statement, bulk_insert, execute, in_one
from promptdeck.store.pending_runs import PendingRuns
from promptdeck.store.run_metadata import metadata_rows
from promptdeck.store.tables import run_metadata, runs
from promptdeck.store.usage_rollups import MetadataCaps, RollupBatch, rollup_statements

log = logging.getLogger("promptdeck.writer")

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)
RESTART_DELAYS = (0.0, 0.05, 0.2, 1.0)  # before restarting the loop, by its crashes in a row
# Most runs in one transaction, by database, unless configured (PROMPTDECK_WRITER_BATCH_SIZE).
BATCH_SIZES = {"sqlite": 5000, "postgresql": 500}
PREPARED_AT_ONCE = 16  # runs prepared between two chances for the event loop to serve requests
_RUN_ROW = operator.attrgetter(*runs.columns.keys())  # a RunRecord as a row of `runs`, in one call
_METADATA_ROW = operator.itemgetter(*run_metadata.columns.keys())


@dataclass(frozen=True)
class PreparedBatch:
    """A batch as the driver takes it: the statements inserting its runs and their metadata and
    adding to the usage rollups, with their parameters."""

    statements: list[Statement]
    runs: int


@dataclass
class WriterMetrics:
    queued: int = 0  # filled in by snapshot()
    written: int = 0
    failed: int = 0
    batches: int = 0
    last_batch_ms: float = 0.0
    restarts: int = 0  # the loop crashed and was started again
    crashed_writes: int = 0  # a batch's write crashed; its unwritten runs were written again


class RunWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        batch_size: int | None = None,
        flush_seconds: float = 0.25,
        queue_size: int = 50_000,
        after_batch: Callable[[], Awaitable[None]] | None = None,
        concurrent_batches: int | None = None,
        batch_written: Callable[[int, float], None] | None = None,
    ) -> None:
        self.engine = engine
        # PostgreSQL writes two batches at once, on two connections, so its backends use two
        # cores (rollup rows are upserted in key order: they wait for each other, never
        # deadlock); SQLite takes one writer at a time.
        self.concurrent_batches = concurrent_batches or (2 if engine.dialect.name == "postgresql" else 1)
        self.batch_size = batch_size or BATCH_SIZES.get(engine.dialect.name, 500)
        self.flush_seconds = flush_seconds
        self.after_batch = after_batch
        self.batch_written = batch_written  # (runs, seconds) after each batch: /metrics' hook
        self.metrics = WriterMetrics()
        self._queue: asyncio.Queue[RunRecord | None] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None  # the supervisor
        self._loop: asyncio.Task[None] | None = None  # the loop it supervises
        self._writing: set[asyncio.Task[None]] = set()  # batches being written
        self._taken: list[RunRecord] = []  # taken off the queue, not handed to a write yet
        self._closing = False  # stop()'s sentinel was taken: the loop empties the queue and ends
        self._ended = False  # stopped, or the supervisor ended: `put` writes runs itself
        self._crashes_in_a_row = 0
        self._one_direct_write = asyncio.Lock()
        self._warned_ended = False
        self._overflow: set[asyncio.Task[None]] = set()
        # Queued, not yet written: by request id, and by run id and external id (look-ups below).
        self.pending = PendingRuns()
        self._metadata_caps = MetadataCaps()

    def start(self) -> None:
        self._ended = self._closing = False
        self._task = asyncio.create_task(self._supervise(), name="run-writer")

    async def put(self, record: RunRecord) -> None:
        """Queue a finished run; waits only when the queue is full. Once the writer has ended,
        writes the run itself (module docstring)."""
        self.pending[record.request_id] = record
        if self._ended:
            if not self._warned_ended:
                self._warned_ended = True
                log.warning("the run writer is not running: runs are written one by one as they end")
            await self._write_directly([record])
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            if not await self._queued_unless_ended(record):
                await self._write_directly([record])

    async def _queued_unless_ended(self, item: RunRecord | None) -> bool:
        """Wait for room in the queue, or for the writer to end (then nothing would make room):
        whether the item was queued."""
        queuing = asyncio.ensure_future(self._queue.put(item))
        try:
            await asyncio.wait(
                (queuing,) if self._task is None else (queuing, self._task),
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:  # the caller went away: the run is still written
            self._overflow.add(queuing)
            queuing.add_done_callback(self._overflow.discard)
            raise
        if queuing.done():
            return True
        queuing.cancel()
        return False

    def pending_run(self, run_id: str) -> RunRecord | None:
        """A queued run, not yet written, by its id."""
        return self.pending.by_id(run_id)

    def pending_run_by_request_id(self, request_id: str) -> RunRecord | None:
        """A queued run, not yet written, by its request id."""
        return self.pending.get(request_id)

    def pending_run_by_external_id(self, workspace_id: str, external_id: str) -> RunRecord | None:
        """A queued run, not yet written, by the external id its caller gave it."""
        return self.pending.by_external_id(workspace_id, external_id)

    @property
    def alive(self) -> bool:
        """Whether the writer is taking runs off its queue (for readiness checks)."""
        return self._task is not None and not self._task.done() and not self._ended

    def snapshot(self) -> WriterMetrics:
        """The writer's counters, with the queue length as of now."""
        return replace(self.metrics, queued=self._queue.qsize())

    async def stop(self) -> None:
        """Write everything queued, then stop."""
        task = self._task
        if task is None:
            return
        if not task.done() and await self._queued_unless_ended(None):
            await asyncio.wait((task,))
        if task.cancelled():
            log.error("the run writer had been cancelled; writing the runs it left")
        elif (error := task.exception()) is not None:
            log.error("the run writer ended with an error; writing the runs it left", exc_info=error)
        self._task, self._ended = None, True
        await self._write_leftovers()

    async def flush(self) -> None:
        """Wait until every run queued so far is written (for tests and the CLI)."""
        while self._queue.qsize() or self._taken or self._writing:
            if self._task is None or self._task.done():  # no writer to wait for: write them here
                await self._write_leftovers()
                return
            await asyncio.sleep(0.01)

    async def _write_leftovers(self) -> None:
        """Once the writer has ended: wait for the batches being written, then write every run
        still pending (queued, taken, or queued by a `put` whose caller went away) here."""
        for queuing in list(self._overflow):
            queuing.cancel()
        while self._writing:
            await asyncio.wait(set(self._writing))
        while not self._queue.empty():
            self._queue.get_nowait()
        self._taken = []
        await self._write_directly(list(self.pending.values()))

    async def _write_directly(self, records: list[RunRecord]) -> None:
        """Write runs in the caller's task, in batches, one such write at a time; only those still
        pending (another caller may have written them meanwhile)."""
        async with self._one_direct_write:
            records = [r for r in records if self.pending.holds(r)]
            for start in range(0, len(records), self.batch_size):
                await self._write_or_split(records[start : start + self.batch_size])

    async def _supervise(self) -> None:
        """Run the loop until `stop()` closes it, starting it again whenever it crashes; then
        wait for the batches being written."""
        try:
            while True:
                loop = self._loop = asyncio.create_task(self._take_batches(), name="run-writer-loop")
                await asyncio.wait((loop,))
                if not loop.cancelled() and loop.exception() is None:
                    break
                self.metrics.restarts += 1
                log.error(
                    "the run writer's loop crashed (%s); restarting it, %d run(s) it held written again",
                    "cancelled" if loop.cancelled() else "raised",
                    len(self._taken),
                    exc_info=None if loop.cancelled() else loop.exception(),
                )
                if self._taken:
                    taken, self._taken = self._taken, []
                    self._start_write(self._write_or_split(taken), taken, again=False)
                await asyncio.sleep(RESTART_DELAYS[min(self._crashes_in_a_row, len(RESTART_DELAYS) - 1)])
                self._crashes_in_a_row += 1
            while self._writing:
                await asyncio.wait(set(self._writing))
        finally:
            self._ended = True
            if self._loop is not None and not self._loop.done():
                self._loop.cancel()

    async def _take_batches(self) -> None:
        """Take batches off the queue and write them, up to `concurrent_batches` at once. A
        batch is prepared (rows, rollup sums, statements: Python) while those before it are
        being written, so the two overlap. Runs taken are held in `_taken` until their write
        starts, so a crash cannot lose them."""
        while True:
            batch = self._taken
            if not batch:
                if self._closing:
                    try:
                        first = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                else:
                    first = await self._queue.get()
                if first is None:
                    self._closing = True
                    continue
                batch.append(first)
            deadline = time.monotonic() + self.flush_seconds
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - time.monotonic()
                    if self._closing or timeout <= 0:
                        break
                    try:  # not `wait_for`, which (Python 3.11) starts a task for every run
                        async with asyncio.timeout(timeout):
                            item = await self._queue.get()
                    except TimeoutError:
                        break
                if item is None:
                    self._closing = True
                else:
                    batch.append(item)
            records, prepared = await self._prepared(batch)
            while len(self._writing) >= self.concurrent_batches:
                await asyncio.wait(self._writing, return_when=asyncio.FIRST_COMPLETED)
            self._taken = []
            self._crashes_in_a_row = 0
            self._start_write(self._write(records, prepared), records, again=True)

    def _start_write(
        self, writing: Coroutine[None, None, None], records: list[RunRecord], again: bool
    ) -> None:
        task = asyncio.create_task(writing)
        self._writing.add(task)
        task.add_done_callback(partial(self._after_write, records, again))

    def _after_write(self, records: list[RunRecord], again: bool, task: asyncio.Task[None]) -> None:
        """A write ended: if it crashed, say so (its exception is retrieved here) and, for a
        batch's first write, write its unwritten runs again."""
        self._writing.discard(task)
        if not task.cancelled() and task.exception() is None:
            return
        self.metrics.crashed_writes += 1
        unwritten = [r for r in records if self.pending.holds(r)]
        log.error(
            "writing %d run(s) crashed; %d unwritten%s",
            len(records),
            len(unwritten),
            ", written again" if again else ", left pending for stop() to write",
            exc_info=None if task.cancelled() else task.exception(),
        )
        if again and unwritten:
            self._start_write(self._write_or_split(unwritten), unwritten, again=False)

    async def _write_or_split(self, records: list[RunRecord]) -> None:
        """Write runs again whose write crashed (or the loop holding them): as one batch, and
        if that crashes too, one by one; a run whose write crashes on its own is counted failed."""
        records = [r for r in records if self.pending.holds(r)]
        if not records:
            return
        try:
            await self._write(*await self._prepared(records))
            return
        except Exception:
            log.exception("writing %d run(s) again crashed; writing them one by one", len(records))
        for record in records:
            if not self.pending.holds(record):
                continue
            try:
                await self._write(*await self._prepared([record]))
            except Exception:
                self.metrics.failed += 1
                self.pending.pop(record.request_id, None)
                log.exception("run %s could not be written", record.request_id)

    async def _prepared(self, records: list[RunRecord]) -> tuple[list[RunRecord], PreparedBatch]:
        """The batch, prepared; a run whose row cannot even be made (a value the driver cannot
        take) is left out, counted as failed, so it cannot keep the others from the log."""
        try:
            return records, await self._prepare(records)
        except Exception:
            preparable = []
            for record in records:
                try:
                    await self._prepare([record])
                    preparable.append(record)
                except Exception:
                    self.metrics.failed += 1
                    self.pending.pop(record.request_id, None)
                    log.exception("run %s could not be written", record.request_id)
            return preparable, await self._prepare(preparable)

    async def _prepare(self, records: list[RunRecord]) -> PreparedBatch:
        """A few runs at a time, each slice's rows made, encoded for the driver and summed into
        the rollups before the event loop gets a turn: no slice holds it for long (bench/README.md,
        "A flat p99")."""
        dialect = self.engine.dialect
        runs_insert, metadata_insert = bulk_insert(dialect, runs), bulk_insert(dialect, run_metadata)
        rows: list[Row] = []
        meta: list[Row] = []
        rollup: RollupBatch | None = RollupBatch()
        for start in range(0, len(records), PREPARED_AT_ONCE):
            if start:
                await asyncio.sleep(0)
            chunk = records[start : start + PREPARED_AT_ONCE]
            rows += runs_insert.converted(map(_RUN_ROW, chunk))
            chunk_meta = [m for r in chunk for m in metadata_rows(r)]
            meta += metadata_insert.converted(map(_METADATA_ROW, chunk_meta))
            if rollup is not None:
                try:
                    rollup.add_runs(chunk, chunk_meta, self._metadata_caps)
                except Exception:  # what it added so far may be partial: sum again, run by run
                    rollup = None
        await asyncio.sleep(0)
        if rollup is None:
            rollup = self._rollups_run_by_run(records)
        logged: list[Statement] = []
        for insert, converted in ((runs_insert, rows), (metadata_insert, meta)):
            for statement in insert.each_statement(converted) if converted else ():
                logged.append(statement)
                await asyncio.sleep(0)
        # The runs first, then the rollups: with two batches in flight, the second inserts its
        # runs while the first holds the rollup rows both add to.
        statements = in_one(dialect, logged) + in_one(dialect, rollup_statements(dialect, rollup))
        return PreparedBatch(statements, len(records))

    def _rollups_run_by_run(self, records: list[RunRecord]) -> RollupBatch:
        """The rollups of runs one of which the rollups cannot take: it must not keep the others
        from the log, nor from the rollups."""
        rollup = RollupBatch()
        for record in records:
            alone = RollupBatch()  # so that a failure halfway adds nothing
            try:
                alone.add_runs([record], metadata_rows(record), self._metadata_caps)
            except Exception:
                log.exception("run %s is written without usage rollups", record.request_id)
                continue
            rollup.merge(alone)
        return rollup

    async def _write(self, batch: list[RunRecord], prepared: PreparedBatch) -> None:
        """Insert a batch; if the database refuses it even after retries, each run on its own. A
        run leaves `pending` as soon as it is written (or given up), so that after a crash the
        runs still pending are exactly those to write again."""
        started = time.perf_counter()
        if await self._insert_with_retries(prepared):
            for record in batch:
                self.pending.pop(record.request_id, None)
            self.metrics.written += len(batch)
        else:
            for record in batch:  # isolate the row(s) the database refuses
                single = await self._prepare([record])
                if not await self._insert_with_retries(single, delays=(0.05,)):
                    self.metrics.failed += 1
                    log.error("run %s could not be written", record.request_id)
                else:
                    self.metrics.written += 1
                self.pending.pop(record.request_id, None)
        self.metrics.batches += 1
        seconds = time.perf_counter() - started
        self.metrics.last_batch_ms = seconds * 1000
        if self.batch_written is not None:
            with contextlib.suppress(Exception):  # counting a batch must never rewrite it
                self.batch_written(len(batch), seconds)
        if self.after_batch is not None:
            with contextlib.suppress(Exception):
                await self.after_batch()

    async def _insert_with_retries(
        self, prepared: PreparedBatch, delays: tuple[float, ...] = RETRY_DELAYS
    ) -> bool:
        """Insert runs and their metadata rows, and add them to the usage rollups, in one
        transaction."""
        for attempt in range(len(delays) + 1):
            try:
                async with self.engine.begin() as conn:
                    await execute(conn, prepared.statements)
                return True
            except Exception as exc:
                if attempt == len(delays):
                    log.warning("writing %d run(s) failed: %s", prepared.runs, exc)
                    return False
                await asyncio.sleep(delays[attempt])
        return False
