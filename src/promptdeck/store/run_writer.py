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

All the Python work of a batch (rows, rollup sums, the drivers' parameters) is done while the
batch before is being written, fifty runs at a time so that requests are served in between;
the database then only runs the ready statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord
from promptdeck.store.bulk_insert import Row, Statement, bound, execute, in_one
from promptdeck.store.run_metadata import metadata_rows
from promptdeck.store.tables import run_metadata, runs
from promptdeck.store.usage_rollups import MetadataCaps, RollupBatch, rollup_statements

log = logging.getLogger("promptdeck.writer")

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)
# Most runs in one transaction, by database, unless configured (PROMPTDECK_WRITER_BATCH_SIZE).
BATCH_SIZES = {"sqlite": 5000, "postgresql": 500}
PREPARED_AT_ONCE = 50  # runs prepared between two chances for the event loop to serve requests
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


class RunWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        batch_size: int | None = None,
        flush_seconds: float = 0.25,
        queue_size: int = 50_000,
        after_batch: Callable[[], Awaitable[None]] | None = None,
        concurrent_batches: int | None = None,
    ) -> None:
        self.engine = engine
        # PostgreSQL writes two batches at once, on two connections, so its backends use two
        # cores (rollup rows are upserted in key order: they wait for each other, never
        # deadlock); SQLite takes one writer at a time.
        self.concurrent_batches = concurrent_batches or (2 if engine.dialect.name == "postgresql" else 1)
        self.batch_size = batch_size or BATCH_SIZES.get(engine.dialect.name, 500)
        self.flush_seconds = flush_seconds
        self.after_batch = after_batch
        self.metrics = WriterMetrics()
        self._queue: asyncio.Queue[RunRecord | None] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._overflow: set[asyncio.Task[None]] = set()
        self.pending: dict[str, RunRecord] = {}  # queued, not yet written: readable by request id
        self._metadata_caps = MetadataCaps()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="run-writer")

    async def put(self, record: RunRecord) -> None:
        """Queue a finished run; waits only when the queue is full."""
        self.pending[record.request_id] = record
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            try:
                await self._queue.put(record)
            except asyncio.CancelledError:  # the caller went away: the run is still written
                task = asyncio.create_task(self._queue.put(record))
                self._overflow.add(task)
                task.add_done_callback(self._overflow.discard)
                raise

    def pending_run(self, run_id: str) -> RunRecord | None:
        """A queued run, not yet written, by its id (`pending` is keyed by request id)."""
        return next((r for r in list(self.pending.values()) if r.id == run_id), None)

    def snapshot(self) -> WriterMetrics:
        """The writer's counters, with the queue length as of now."""
        return replace(self.metrics, queued=self._queue.qsize())

    async def stop(self) -> None:
        """Write everything queued, then stop."""
        if self._task is None:
            return
        if self._overflow:
            await asyncio.gather(*self._overflow, return_exceptions=True)
        await self._queue.put(None)
        await self._task
        self._task = None

    async def flush(self) -> None:
        """Wait until every run queued so far is written (for tests and the CLI)."""
        while self._queue.qsize() or self._in_flight:  # noqa: ASYNC110 - polling is fine for a rare call
            await asyncio.sleep(0.01)

    _in_flight = 0  # batches taken off the queue and not written yet

    async def _run(self) -> None:
        """Take batches off the queue and write them, up to `concurrent_batches` at once. A
        batch is prepared (rows, rollup sums, statements: Python) while those before it are
        being written, so the two overlap."""
        closing = False
        writing: set[asyncio.Task[None]] = set()
        try:
            while not closing:
                first = await self._queue.get()
                if first is None:
                    break
                self._in_flight += 1
                batch = [first]
                deadline = time.monotonic() + self.flush_seconds
                while len(batch) < self.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        timeout = deadline - time.monotonic()
                        if timeout <= 0:
                            break
                        try:
                            item = await asyncio.wait_for(self._queue.get(), timeout)
                        except TimeoutError:
                            break
                    if item is None:
                        closing = True
                        break
                    batch.append(item)
                batch, prepared = await self._prepared(batch)
                while len(writing) >= self.concurrent_batches:
                    _, writing = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
                writing.add(asyncio.create_task(self._write(batch, prepared)))
        finally:
            if writing:
                await asyncio.gather(*writing)

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
        dialect = self.engine.dialect
        rows: list[Row] = []
        meta: list[Row] = []
        rollup: RollupBatch | None = RollupBatch()
        for start in range(0, len(records), PREPARED_AT_ONCE):
            if start:
                await asyncio.sleep(0)
            chunk = records[start : start + PREPARED_AT_ONCE]
            rows += map(_RUN_ROW, chunk)
            chunk_meta = [m for r in chunk for m in metadata_rows(r)]
            meta += map(_METADATA_ROW, chunk_meta)
            if rollup is not None:
                try:
                    rollup.add_runs(chunk, chunk_meta, self._metadata_caps)
                except Exception:  # what it added so far may be partial: sum again, run by run
                    rollup = None
        if rollup is None:
            rollup = self._rollups_run_by_run(records)
        logged = bound(dialect, runs, rows)
        await asyncio.sleep(0)
        logged += bound(dialect, run_metadata, meta)
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
        try:
            started = time.perf_counter()
            if not await self._insert_with_retries(prepared):
                for record in batch:  # isolate the row(s) the database refuses
                    single = await self._prepare([record])
                    if not await self._insert_with_retries(single, delays=(0.05,)):
                        self.metrics.failed += 1
                        log.error("run %s could not be written", record.request_id)
                    else:
                        self.metrics.written += 1
            else:
                self.metrics.written += len(batch)
            for record in batch:
                self.pending.pop(record.request_id, None)
            self.metrics.batches += 1
            self.metrics.last_batch_ms = (time.perf_counter() - started) * 1000
            if self.after_batch is not None:
                with contextlib.suppress(Exception):
                    await self.after_batch()
        finally:
            self._in_flight -= 1

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
