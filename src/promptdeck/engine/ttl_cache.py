"""A small read-through cache with a time-to-live and explicit invalidation.

The hot path reads from it; writes in this process invalidate at once, and the
TTL bounds how long another replica can serve a stale entry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, load: Callable[[K], Awaitable[V]], ttl_seconds: float) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # bumped by invalidate(): a load begun before it must not be stored

    async def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._loading.get(key)
        if pending is not None:  # one load at a time per key, however many callers wait
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self._generation
        try:
            value = await self._load(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) get it re-raised
            raise
        else:
            if generation == self._generation:
                self._entries[key] = (time.monotonic() + self._ttl, value)
            future.set_result(value)
            return value
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]

    def invalidate(self, key: K | None = None) -> None:
        self._generation += 1
        self._loading.clear()  # later callers start a fresh load instead of joining a stale one
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)
