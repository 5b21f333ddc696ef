"""Many callers' requests to a shared store, sent together: one round trip for a whole batch.

A caller `submit`s its item and awaits its own result. Items that arrive while a batch is on its
way wait and go in the next one, so under load each round trip carries many callers' items, and
its fixed cost (the client library's per-command work, a system call each way, the server's
per-script overhead) is paid once per batch instead of once per caller. A lone caller's item
goes on the next turn of the event loop: nothing waits for company.

engine/quota_redis.py admits calls this way: with 32 callers, redis-py's ~130 µs of CPU per
command was most of what Redis limits cost (bench/README.md, "Limits and budgets").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 64  # items per round trip: bounds the time one batch holds the store


class BatchedCalls(Generic[Item, Result]):
    """`send(items)` returns one result per item, in order; one batch is in flight at a time."""

    def __init__(
        self, send: Callable[[list[Item]], Awaitable[Sequence[Result]]], max_batch: int = MAX_BATCH
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._sender: asyncio.Task[None] | None = None

    def submit(self, item: Item) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, result))
        if self._sender is None:
            self._sender = loop.create_task(self._drain())
        return result

    async def aclose(self) -> None:
        """Stop sending: whoever still waits is cancelled."""
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        for _, result in self._waiting:
            result.cancel()
        self._waiting.clear()

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    results = await self._send([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} batched calls")
                except Exception as exc:  # every caller of the batch gets the failure
                    for _, result in batch:
                        if not result.done():
                            result.set_exception(exc)
                    continue
                for (_, result), found in zip(batch, results, strict=True):  # (lengths checked)
                    if not result.done():  # its caller may have been cancelled meanwhile
                        result.set_result(found)
        except asyncio.CancelledError:
            for _, result in batch:
                result.cancel()
            raise
        finally:
            self._sender = None
