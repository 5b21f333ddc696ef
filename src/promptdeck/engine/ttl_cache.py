"""A small read-through cache with a time-to-live, a size bound and explicit invalidation.

The hot path reads from it; writes in this process invalidate at once, and the
TTL bounds how long another replica can serve a stale entry. Callers choose what
they look up (a presented key's hash, a deployment name), so the cache must stay
bounded whatever they send: entries live in LRU stores of fixed size, and expired
ones are swept as new ones arrive. Misses (a loader's `None`: no such key, no such
deployment) have a smaller store of their own, so a flood of made-up names evicts
only other made-up names, never the entries that serve real traffic.

A hit is a plain function call (`cached`), with no coroutine: the invoke path makes about
five lookups a request. cachetools' `TTLCache`, used before, cost ~0.6 µs a hit in Python
layers (a membership test, then a lookup, each through its timer); a store here is two
C-implemented `OrderedDict`s, one in use order and one in load order (`_Store`).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Missing(enum.Enum):
    """What `cached` returns when the key is not held (a held miss is its stored `None`)."""

    MISSING = enum.auto()


MISSING: Literal[Missing.MISSING] = Missing.MISSING


class _Store(Generic[K, V]):
    """At most `bound` entries: the least recently used one goes first, and the expired ones
    (whose ages follow their load order, the TTL being one for all) as new ones arrive."""

    __slots__ = ("_bound", "_loaded", "_used")

    def __init__(self, bound: int) -> None:
        self._used: OrderedDict[K, tuple[V, float]] = OrderedDict()  # key: (value, expires at)
        self._loaded: OrderedDict[K, float] = OrderedDict()  # key: expires at, oldest first
        self._bound = max(1, bound)

    def put(self, key: K, value: V, now: float, expires_at: float) -> None:
        loaded = self._loaded
        while loaded:  # sweep the expired, oldest first
            oldest, at = next(iter(loaded.items()))
            if at > now:
                break
            del loaded[oldest], self._used[oldest]
        self._used.pop(key, None)
        loaded.pop(key, None)
        self._used[key] = (value, expires_at)
        loaded[key] = expires_at
        if len(self._used) > self._bound:
            gone, _ = self._used.popitem(last=False)
            del loaded[gone]

    def get(self, key: K, now: float) -> V | Literal[Missing.MISSING]:
        entry = self._used.get(key)
        if entry is None or entry[1] <= now:  # an expired one is loaded again, and put over it
            return MISSING
        self._used.move_to_end(key)
        return entry[0]

    def pop(self, key: K) -> None:
        if self._used.pop(key, None) is not None:
            del self._loaded[key]

    def clear(self) -> None:
        self._used.clear()
        self._loaded.clear()

    def __len__(self) -> int:
        return len(self._used)


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
        self._ttl = ttl_seconds
        self._clock = clock
        self._found: _Store[K, V] = _Store(max_entries)
        self._missing: _Store[K, V] = _Store(max_misses)
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # bumped by invalidate(): a load begun before it must not be stored

    def cached(self, key: K) -> V | Literal[Missing.MISSING]:
        """The value held for `key` (marked as just used), or `MISSING`: then `await get(key)`."""
        now = self._clock()
        value = self._found.get(key, now)
        return self._missing.get(key, now) if value is MISSING else value

    async def get(self, key: K) -> V:
        value = self.cached(key)
        if value is not MISSING:
            return value
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
                now = self._clock()
                other = self._found if value is None else self._missing
                other.pop(key)  # a name that now exists, or no longer does
                (self._missing if value is None else self._found).put(key, value, now, now + self._ttl)
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
            self._found.pop(key)
            self._missing.pop(key)

    @property
    def size(self) -> tuple[int, int]:
        """(found, missing) entries held, expired ones not yet swept included: what the bounds limit."""
        return len(self._found), len(self._missing)
