"""Writes finished runs to the database in batches, off the request path.

A bounded queue gives backpressure (a full queue makes callers wait a little
instead of growing without bound); failed batches are retried, then split so
one bad row cannot sink the others; `stop()` drains everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord
from promptdeck.store.run_metadata import metadata_rows
from promptdeck.store.tables import run_metadata, runs

log = logging.getLogger("promptdeck.writer")

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)


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
        batch_size: int = 100,
        flush_seconds: float = 0.25,
        queue_size: int = 50_000,
        after_batch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.after_batch = after_batch
        self.metrics = WriterMetrics()
        self._queue: asyncio.Queue[RunRecord | None] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._overflow: set[asyncio.Task[None]] = set()
        self.pending: dict[str, RunRecord] = {}  # queued, not yet written: readable by request id

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
        while self._queue.qsize() or self._busy:  # noqa: ASYNC110 - polling is fine for a rare call
            await asyncio.sleep(0.01)

    _busy = False

    async def _run(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is None:
                break
            self._busy = True
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
            await self._write(batch)
            self._busy = False

    async def _write(self, batch: list[RunRecord]) -> None:
        started = time.perf_counter()
        if not await self._insert_with_retries(batch):
            for record in batch:  # isolate the row(s) the database refuses
                if not await self._insert_with_retries([record], delays=(0.05,)):
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

    async def _insert_with_retries(
        self, records: list[RunRecord], delays: tuple[float, ...] = RETRY_DELAYS
    ) -> bool:
        """Insert runs and their metadata rows, in one transaction."""
        rows = [r.as_row() for r in records]
        meta = [m for r in records for m in metadata_rows(r)]
        for attempt in range(len(delays) + 1):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(runs.insert(), rows)
                    if meta:
                        await conn.execute(run_metadata.insert(), meta)
                return True
            except Exception as exc:
                if attempt == len(delays):
                    log.warning("writing %d run(s) failed: %s", len(rows), exc)
                    return False
                await asyncio.sleep(delays[attempt])
        return False
