"""A small read-through cache with a time-to-live, a size bound and explicit invalidation.

The hot path reads from it; writes in this process invalidate at once, and the
TTL bounds how long another replica can serve a stale entry. Callers choose what
they look up (a presented key's hash, a deployment name), so the cache must stay
bounded whatever they send: entries live in LRU stores of fixed size, and expired
ones are swept as new ones arrive. Misses (a loader's `None`: no such key, no such
deployment) have a smaller store of their own, so a flood of made-up names evicts
only other made-up names, never the entries that serve real traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    MAX_ENTRIES = 10_000  # default bound of found values (real keys, deployments, credentials)
    MAX_MISSES = 1_000  # default bound of `None` values (unknown keys or names)

    def __init__(
        self,
        load: Callable[[K], Awaitable[V]],
        ttl_seconds: float,
        *,
        max_entries: int = MAX_ENTRIES,
        max_misses: int = MAX_MISSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        # cachetools' TTLCache is an LRU whose every insert first drops the expired entries.
        self._found: TTLCache[K, V] = TTLCache(max(1, max_entries), ttl_seconds, timer=clock)
        self._missing: TTLCache[K, V] = TTLCache(max(1, max_misses), ttl_seconds, timer=clock)
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # bumped by invalidate(): a load begun before it must not be stored

    async def get(self, key: K) -> V:
        for store in (self._found, self._missing):
            if key in store:  # not if expired
                try:
                    return store[key]
                except KeyError:  # expired since, on a clock that moved on
                    pass
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
                (self._missing if value is None else self._found)[key] = value
            future.set_result(value)
            return value
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]

    def invalidate(self, key: K | None = None) -> None:
        self._generation += 1
        self._loading.clear()  # later callers start a fresh load instead of joining a stale one
        if key is None:
            self._found.clear()
            self._missing.clear()
        else:
            self._found.pop(key, None)
            self._missing.pop(key, None)

    @property
    def size(self) -> tuple[int, int]:
        """(found, missing) entries held, expired ones not yet swept included: what the bounds limit."""
        return int(self._found.currsize), int(self._missing.currsize)
