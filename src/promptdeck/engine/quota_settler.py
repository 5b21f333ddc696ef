"""Settles finished calls off the request path, in batches (docs/governance.md, "How budgets are
counted").

A shared backend (Redis) costs a round trip and some client CPU per step; a call's settlement
(its real tokens and cost) need not hold up its answer. So the governor puts it here, and one
task sends what is queued as one `settle` step per batch, after waiting `GATHER_SECONDS` for
more (unless a batch is full already): a call's latency never waits for it, and the client's
cost is shared by the batch, even with one caller. Settling a moment late only holds a budget's
money a little longer (conservative: a budget may refuse a call it would have just admitted,
never admit one too many), and counts tokens a moment late (50 ms, in windows of a minute).

The queue is bounded: when it is full (Redis much slower than the calls), a call settles
inline instead, which slows the calls down rather than losing their settlements. A failed
batch is logged (at most every few seconds) and dropped: its holds are released when their
hold time passes, as a dead replica's are. `aclose` sends what is left (services.stop, after
the engine closed its open runs and before the backend closes).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from promptdeck.engine.quota_backend import QuotaBackend, QuotaStoreUnavailable, Settlement

log = logging.getLogger("promptdeck.quotas")

MAX_QUEUED = 10_000  # settlements waiting; past this a call settles inline
MAX_BATCH = 128  # settlements per step: one Lua script keeps Redis busy ~1-2 ms at most
GATHER_SECONDS = 0.05  # a batch waits this long for company: one step per ~50 ms, even for one caller


class Settler:
    def __init__(
        self,
        backend: QuotaBackend,
        warn: Callable[[str, Exception], None],
        *,
        max_queued: int = MAX_QUEUED,
        max_batch: int = MAX_BATCH,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self._backend = backend
        self._warn = warn
        self._queue: deque[Settlement] = deque()
        self._max_queued = max_queued
        self._max_batch = max_batch
        self._gather_seconds = gather_seconds
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def put(self, settlement: Settlement) -> None:
        """Queue one call's settlement (started on first use: it needs the running loop)."""
        if self._closed or len(self._queue) >= self._max_queued:
            await self._send([settlement])
            return
        self._queue.append(settlement)
        self._ready.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain_forever(), name="quota-settler")

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Send everything queued now (tests, and `aclose`)."""
        while self._queue:
            await self._send(self._take())

    async def aclose(self) -> None:
        """Send what is queued, then settle any later call inline."""
        self._closed = True
        self._ready.set()
        if self._task is not None:
            await self._task  # it ends once the queue is empty
            self._task = None
        await self.flush()

    def _take(self) -> list[Settlement]:
        batch: list[Settlement] = []
        while self._queue and len(batch) < self._max_batch:
            batch.append(self._queue.popleft())
        return batch

    async def _drain_forever(self) -> None:
        while self._queue or not self._closed:
            if not self._queue:
                await self._ready.wait()
                self._ready.clear()
                continue
            if len(self._queue) < self._max_batch and not self._closed:
                await asyncio.sleep(self._gather_seconds)
            await self._send(self._take())

    async def _send(self, batch: list[Settlement]) -> None:
        """Never raises: the calls are over."""
        try:
            await self._backend.settle(batch)
        except QuotaStoreUnavailable as exc:
            self._warn("could not settle calls' tokens and cost (their holds expire): %s", exc)
        except Exception:
            log.exception("settling calls' tokens and cost failed")
