"""The Redis quota backend on a real redis-server: the shared contract (tests/engine/
test_quota_backends.py, run here with a moved clock), then what only a shared store shows: two
backends with their own connection pools, as two replicas, enforce one limit and one budget."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from promptdeck.engine.quota_backend import (
    BudgetCounter,
    QuotaStoreUnavailable,
    Settlement,
    Spend,
    UniqueIds,
    Window,
)
from promptdeck.engine.quota_redis import BUDGET, REQUESTS, TOKENS, RedisQuotas
from tests.engine.test_quota_backends import (  # the contract every backend keeps
    Clock,
    Counting,
    test_a_batch_settles_many_calls_in_one_step,
    test_a_call_is_counted_in_every_window_and_budget_or_none,
    test_a_call_is_counted_in_every_window_or_none,
    test_a_lowered_limit_waits_until_enough_calls_have_aged_out,
    test_a_reservation_is_refused_past_any_cap,
    test_a_spend_equal_to_the_cap_fits,
    test_a_zero_amount_is_never_refused,
    test_absent_budget_counters_are_reported_then_seeded,
    test_an_unsettled_reservation_is_released_after_its_hold,
    test_concurrent_reservations_never_exceed_the_cap,
    test_counters_expire_at_their_period_end,
    test_exactly_n_of_many_concurrent_calls_are_admitted,
    test_no_windows_admits_without_a_limit,
    test_seeding_only_sets_a_counter_that_does_not_exist,
    test_settling_releases_the_hold_and_adds_the_actual_cost,
    test_the_protocol_is_implemented,
    test_the_window_slides,
    test_tokens_are_counted_after_the_call,
    test_tokens_leave_the_window_second_by_second,
)
from tests.support.redis_server import RedisServer, redis_server

CONTRACT = (
    test_the_protocol_is_implemented,
    test_exactly_n_of_many_concurrent_calls_are_admitted,
    test_a_call_is_counted_in_every_window_or_none,
    test_a_lowered_limit_waits_until_enough_calls_have_aged_out,
    test_a_call_is_counted_in_every_window_and_budget_or_none,
    test_absent_budget_counters_are_reported_then_seeded,
    test_the_window_slides,
    test_tokens_are_counted_after_the_call,
    test_tokens_leave_the_window_second_by_second,
    test_no_windows_admits_without_a_limit,
    test_a_reservation_is_refused_past_any_cap,
    test_a_spend_equal_to_the_cap_fits,
    test_concurrent_reservations_never_exceed_the_cap,
    test_settling_releases_the_hold_and_adds_the_actual_cost,
    test_a_batch_settles_many_calls_in_one_step,
    test_a_zero_amount_is_never_refused,
    test_seeding_only_sets_a_counter_that_does_not_exist,
    test_counters_expire_at_their_period_end,
    test_an_unsettled_reservation_is_released_after_its_hold,
)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@pytest.fixture
async def counting(server: RedisServer) -> AsyncIterator[Counting]:
    """The contract's fixture, on Redis: scripts take the moved clock's time instead of TIME."""
    flush = aioredis.Redis.from_url(server.url)
    await flush.flushdb()
    await flush.aclose()
    clock = Clock()
    backend = RedisQuotas(server.url, clock=clock)
    yield Counting(backend, clock.advance, clock)
    await backend.aclose()


@pytest.fixture
async def replicas(server: RedisServer) -> AsyncIterator[tuple[RedisQuotas, RedisQuotas]]:
    """Two backends on the server's own clock, each with its own connection pool."""
    flush = aioredis.Redis.from_url(server.url)
    await flush.flushdb()
    await flush.aclose()
    a, b = RedisQuotas(server.url), RedisQuotas(server.url)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_two_replicas_admit_exactly_the_limit(replicas: tuple[RedisQuotas, RedisQuotas]) -> None:
    window, per_key = Window("rl:w:shared:r", 50), Window("rl:w:key:r", 1000)
    calls = [replicas[n % 2].admit([window, per_key], []) for n in range(200)]
    results = await asyncio.gather(*calls)
    assert sum(r.admitted for r in results) == 50
    assert sorted(r.remaining for r in results if r.admitted) == list(range(50))
    refused = [r for r in results if not r.admitted]
    assert {r.refused_by for r in refused} == {window.key} and all(0 < r.retry_after <= 60 for r in refused)
    after = await replicas[0].admit([per_key], [])
    assert after.remaining == 1000 - 51  # refused calls were counted in no window


async def test_two_replicas_never_reserve_past_the_cap(replicas: tuple[RedisQuotas, RedisQuotas]) -> None:
    cap, ids = BudgetCounter("bg:w:shared", 1.0, time.time() + 3600), UniqueIds()
    assert (await replicas[0].admit([], [], [cap], 0.07, reservation_id=ids.next())).unseeded == (cap,)
    assert await replicas[0].seed([(cap, 0.25)]) == [True]
    assert await replicas[1].seed([(cap, 0.0)]) == [False]  # the other replica keeps the spend so far
    calls = [replicas[n % 2].admit([], [], [cap], 0.07, reservation_id=ids.next()) for n in range(100)]
    held = [r.reservation for r in await asyncio.gather(*calls) if r.reservation is not None]
    assert len(held) == 10  # 0.25 + 10 * 0.07 = 0.95; one more would pass 1.0
    spend = (await replicas[1].spend([cap.key]))[cap.key]
    assert spend.settled_usd == pytest.approx(0.25) and spend.reserved_usd == pytest.approx(0.7)
    halves = [[Settlement((), 0, r, 0.01) for r in held[n::2]] for n in (0, 1)]
    await asyncio.gather(replicas[0].settle(halves[0]), replicas[1].settle(halves[1]))
    assert (await replicas[0].spend([cap.key]))[cap.key] == Spend(pytest.approx(0.35), 0.0)


async def test_keys_are_namespaced_and_expire(
    replicas: tuple[RedisQuotas, RedisQuotas], server: RedisServer
) -> None:
    backend = replicas[0]
    ends = time.time() + 600
    assert (await backend.admit([Window("r", 5)], [Window("t", 5)])).admitted
    await backend.settle([Settlement(("t",), 40, None, 0.0)])
    budget = BudgetCounter("b", 1.0, ends)
    await backend.seed([(budget, 0.0)])
    assert (await backend.admit([], [], [budget], 0.5, reservation_id="x", hold_seconds=9)).admitted
    client = aioredis.Redis.from_url(server.url)
    try:
        assert sorted(await client.keys("*")) == sorted(
            [(REQUESTS + "r").encode(), (TOKENS + "t").encode(), (BUDGET + "b").encode()]
        )
        for key in (REQUESTS + "r", TOKENS + "t"):
            assert 59_000 < await client.pttl(key) <= 61_000  # a minute after its last use
        assert abs(await client.pttl(BUDGET + "b") - (ends - time.time()) * 1000) < 2_000  # its period's end
    finally:
        await client.aclose()


async def test_an_unreachable_redis_raises_quickly_and_is_tried_again() -> None:
    with redis_server() as own:
        backend = RedisQuotas(own.url)
        window = Window("rl:w:gone:r", 5)
        assert (await backend.admit([window], [])).admitted
        own.process.terminate()
        own.process.wait(timeout=10)
        budget = BudgetCounter("b", 1.0, time.time() + 60)
        for call in (
            backend.admit([window], []),
            backend.settle([Settlement(("t",), 5, None, 0.0)]),
            backend.admit([], [], [budget], 0.1, reservation_id="x", hold_seconds=9),
            backend.seed([(budget, 0.0)]),
            backend.spend(["b"]),
        ):
            start = time.monotonic()
            with pytest.raises(QuotaStoreUnavailable):
                await call
            assert time.monotonic() - start < 0.6
        await backend.aclose()


def restart(server: RedisServer) -> None:
    """Stop the server and start it again on its port, empty."""
    server.process.terminate()
    server.process.wait(timeout=10)
    command = [str(part) for part in server.process.args]  # type: ignore[union-attr]
    server.process = subprocess.Popen(command, cwd=server.directory, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not server.ping() and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_a_restarted_redis_admits_the_next_call_at_once() -> None:
    """Admissions travel on a connection of their own: one a restarted Redis closed is opened
    again, and the script loaded again, within the call (no failure, no quiet period)."""
    with redis_server() as own:
        backend = RedisQuotas(own.url)
        window = Window("rl:w:restart:r", 5)
        assert (await backend.admit([window], [])).admitted
        await asyncio.to_thread(restart, own)
        admitted = await backend.admit([window], [])
        assert admitted.admitted and admitted.remaining == 4  # a new server: its window is empty
        await backend.aclose()


async def test_concurrent_calls_share_scripts(server: RedisServer) -> None:
    """Calls made while an admission is on its way go together in the next script: 64 concurrent
    calls take far fewer than 64 scripts, and each gets its own answer."""
    client = aioredis.Redis.from_url(server.url)
    backend = RedisQuotas(server.url)
    try:
        await client.flushdb()
        await backend.admit([Window("rl:w:warm:r", 5)], [])  # loads the script
        await client.config_resetstat()
        results = await asyncio.gather(*(backend.admit([Window("rl:w:many:r", 40)], []) for _ in range(64)))
        assert sum(r.admitted for r in results) == 40
        assert sorted(r.remaining for r in results if r.admitted) == list(range(40))
        scripts = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"]
        assert scripts <= 3, scripts
    finally:
        await backend.aclose()
        await client.aclose()
