"""Where the response cache keeps answers: this process's memory, or a Redis all replicas share.

Both hold an answer as `encode` writes it (normalized events as orjson, not any dialect's
bytes), so a hit replays in every dialect. The memory store keeps the decoded events too, sized
by their serialized bytes, so a hit there decodes nothing. Redis is asked with a short time
limit; any trouble with it is a miss and a warning (one per `QUIET_SECONDS`), never a failed
call, and a store happens in a task of its own, off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from cachetools import LRUCache

from promptdeck.domain.events import (
    Event,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)

log = logging.getLogger("promptdeck.response_cache")

KEY_PREFIX = "promptdeck:answer:"
REDIS_TIMEOUT = 0.5  # seconds for a GET or SET; a slower Redis is a miss
QUIET_SECONDS = 2.0  # after a Redis failure, calls skip it (a miss each) for this long
ENTRY_OVERHEAD = 200  # bytes an entry costs beyond its serialized answer (key, bookkeeping)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A complete answer as the provider gave it: `Started`, deltas, `Usage`, `Finished`, and
    what that provider call cost (None when its price was unknown)."""

    events: tuple[Event, ...]
    cost: float | None


def encode(answer: CachedAnswer) -> bytes:
    """A compact orjson list per event: [kind, fields...]."""
    rows: list[list[Any]] = []
    for event in answer.events:
        if isinstance(event, Started):
            rows.append(["s", event.model])
        elif isinstance(event, ReasoningDelta):
            rows.append(["r", event.text])
        elif isinstance(event, TextDelta):
            rows.append(["t", event.text])
        elif isinstance(event, ToolCallDelta):
            rows.append(["c", event.index, event.id, event.name, event.arguments_delta])
        elif isinstance(event, Usage):
            rows.append(
                [
                    "u",
                    event.input,
                    event.cached_input,
                    event.cache_write_input,
                    event.output,
                    event.reasoning,
                    event.estimated,
                ]
            )
        elif isinstance(event, Finished):
            rows.append(["f", event.stop_reason])
    return orjson.dumps({"cost": answer.cost, "events": rows})


_DECODERS: dict[str, Callable[..., Event]] = {
    "s": Started,
    "r": ReasoningDelta,
    "t": TextDelta,
    "c": ToolCallDelta,
    "u": Usage,
    "f": Finished,
}


def decode(blob: bytes) -> CachedAnswer:
    data = orjson.loads(blob)
    return CachedAnswer(tuple(_DECODERS[row[0]](*row[1:]) for row in data["events"]), data["cost"])


class AnswerStore(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    def put(self, key: str, answer: CachedAnswer, ttl: float) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Held:
    answer: CachedAnswer
    expires: float
    size: int


class MemoryStore:
    """An LRU of at most `max_bytes` serialized bytes; each entry expires after its TTL."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.clock = clock  # tests move it instead of sleeping
        self._entries: LRUCache[str, _Held] = LRUCache(max(max_bytes, 1), getsizeof=_size)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        return int(self._entries.currsize)

    async def get(self, key: str) -> CachedAnswer | None:
        held = self._entries.get(key)
        if held is None:
            return None
        if held.expires <= self.clock():
            self._entries.pop(key, None)
            return None
        return held.answer

    def put(self, key: str, answer: CachedAnswer, ttl: float) -> None:
        size = len(encode(answer)) + len(key) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return  # larger than the whole cache: not kept (LRUCache would refuse it)
        self._entries[key] = _Held(answer, self.clock() + ttl, size)

    async def aclose(self) -> None:
        self._entries.clear()


def _size(held: _Held) -> int:
    return held.size


class RedisStore:
    """Answers in Redis under `promptdeck:answer:<key>`, each with its TTL (SET PX)."""

    def __init__(self, url: str, timeout: float = REDIS_TIMEOUT) -> None:
        import redis.asyncio as aioredis  # here: redis-py costs ~14 MB, and most servers use none
        from redis.exceptions import RedisError

        self.url = url
        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._read_failures = (RedisError, OSError, ValueError, KeyError, TypeError)
        self._write_failures = (RedisError, OSError)
        self._writes: set[asyncio.Task[None]] = set()
        self._quiet_until = 0.0

    async def get(self, key: str) -> CachedAnswer | None:
        if time.monotonic() < self._quiet_until:
            return None
        try:
            blob = await self._redis.get(KEY_PREFIX + key)
            return decode(blob) if isinstance(blob, bytes) and blob else None
        except self._read_failures as exc:
            self._failed("read", exc)
            return None

    def put(self, key: str, answer: CachedAnswer, ttl: float) -> None:
        if time.monotonic() < self._quiet_until:
            return
        task = asyncio.create_task(self._set(KEY_PREFIX + key, encode(answer), ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _set(self, key: str, blob: bytes, ttl: float) -> None:
        try:
            await self._redis.set(key, blob, px=max(1, round(ttl * 1000)))
        except self._write_failures as exc:
            self._failed("store", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        if time.monotonic() >= self._quiet_until:
            log.warning(
                "the response cache could not %s an answer in Redis (%s); calls go to their "
                "providers for the next %g s",
                what,
                exc,
                QUIET_SECONDS,
            )
        self._quiet_until = time.monotonic() + QUIET_SECONDS

    async def aclose(self) -> None:
        """Finish the stores under way, then close the connections."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._redis.aclose()
