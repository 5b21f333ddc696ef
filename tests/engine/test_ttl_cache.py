"""The read-through cache behind API keys and deployments: one load per key however many wait,
invalidation that beats a load in flight, and bounds that hold whatever callers look up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from promptdeck.domain import keys
from promptdeck.domain.errors import Unauthorized
from promptdeck.engine.auth import KeyCheck
from promptdeck.engine.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Counts loads; names starting with `unknown` load as None (a miss)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, key: str) -> str | None:
        self.calls.append(key)
        if self.gate is not None:
            await self.gate.wait()
        return None if key.startswith("unknown") else f"value of {key}"


async def test_concurrent_callers_share_one_load() -> None:
    load = Loader()
    load.gate = asyncio.Event()
    cache: TtlCache[str, str | None] = TtlCache(load, 10)
    waiting = [asyncio.ensure_future(cache.get("a")) for _ in range(20)]
    await asyncio.sleep(0)
    load.gate.set()
    assert await asyncio.gather(*waiting) == ["value of a"] * 20
    assert load.calls == ["a"]


async def test_an_invalidation_during_a_load_keeps_its_stale_value_out() -> None:
    load = Loader()
    load.gate = asyncio.Event()
    cache: TtlCache[str, str | None] = TtlCache(load, 10)
    first = asyncio.ensure_future(cache.get("a"))
    await asyncio.sleep(0)
    cache.invalidate()  # a write landed while the old value was being read
    load.gate.set()
    assert await first == "value of a"
    await cache.get("a")
    assert load.calls == ["a", "a"]  # loaded again, not served from the stale load


async def test_entries_expire_after_the_ttl_without_sleeping() -> None:
    load, clock = Loader(), Clock()
    cache: TtlCache[str, str | None] = TtlCache(load, 10, clock=clock)
    await cache.get("a")
    clock.now += 9.9
    await cache.get("a")
    assert load.calls == ["a"]
    clock.now += 0.2
    await cache.get("a")
    assert load.calls == ["a", "a"]


async def test_errors_are_not_cached() -> None:
    calls = 0

    async def flaky(key: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down")
        return "up"

    cache: TtlCache[str, str] = TtlCache(flaky, 10)
    with pytest.raises(ConnectionError):
        await cache.get("a")
    assert await cache.get("a") == "up"


async def test_found_entries_are_bounded_least_recently_used_first() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, 60, max_entries=3)
    for key in ("a", "b", "c"):
        await cache.get(key)
    await cache.get("a")  # used again: "b" is now the least recently used
    await cache.get("d")
    assert cache.size == (3, 0)
    load.calls.clear()
    await cache.get("a")
    await cache.get("b")
    assert load.calls == ["b"]


async def test_a_flood_of_misses_cannot_evict_found_entries_or_grow() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, 60, max_entries=100, max_misses=5)
    for key in ("a", "b"):
        await cache.get(key)
    for n in range(1000):
        assert await cache.get(f"unknown-{n}") is None
    assert cache.size == (2, 5)
    load.calls.clear()
    await cache.get("a")
    await cache.get("b")
    await cache.get("unknown-999")  # the newest misses are still answered from memory
    assert load.calls == []


async def test_expired_entries_are_swept_as_new_ones_arrive() -> None:
    load, clock = Loader(), Clock()
    cache: TtlCache[str, str | None] = TtlCache(load, 10, clock=clock)
    for n in range(50):
        await cache.get(f"key-{n}")
        await cache.get(f"unknown-{n}")
    assert cache.size == (50, 50)
    clock.now += 11
    await cache.get("fresh")
    await cache.get("unknown-fresh")
    assert cache.size == (1, 1)


async def test_invalidating_one_key_drops_it_from_either_store() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, 60)
    await cache.get("a")
    await cache.get("unknown")
    cache.invalidate("a")
    cache.invalidate("unknown")
    assert cache.size == (0, 0)


# ── API keys ─────────────────────────────────────────────────────────────────────────────────────


class Keys:
    """An AccessStore that knows no key and counts how often it is asked."""

    def __init__(self) -> None:
        self.lookups = 0

    async def find_by_hash(self, key_hash: str) -> Any:
        self.lookups += 1
        return None


def test_every_new_key_has_the_shape_a_key_is_checked_for() -> None:
    assert all(keys.could_be_key(keys.new_key()) for _ in range(2000))


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "pd_",
        "not-a-key",
        "sk-" + "a" * 40,
        "pd_" + "a" * 39,
        "pd_" + "a" * 41,
        "pd_" + "a" * 39 + "=",
        "pd_" + "a" * 39 + "é",
        "PD_" + "a" * 40,
        " pd_" + "a" * 40,
    ],
)
async def test_a_token_that_cannot_be_a_key_costs_no_lookup_and_no_entry(secret: str) -> None:
    store = Keys()
    check = KeyCheck(store, 60)  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        await check.caller(secret, "invoke")
    assert store.lookups == 0
    assert check._cache.size == (0, 0)


async def test_unknown_keys_of_the_right_shape_are_looked_up_once_and_bounded() -> None:
    store = Keys()
    check = KeyCheck(store, 60, max_entries=10, max_misses=4)  # type: ignore[arg-type]
    repeated = keys.new_key()
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await check.caller(repeated, "invoke")
    assert store.lookups == 1
    for _ in range(100):
        with pytest.raises(Unauthorized):
            await check.caller(keys.new_key(), "invoke")
    assert check._cache.size == (0, 4)
