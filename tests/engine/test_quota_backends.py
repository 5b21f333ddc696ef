"""The counting semantics every quota backend must keep (engine/quota_backend.py).

Each test takes `counting`: a backend and a way to move its clock on. Only the in-process
backend is here; a shared one (Redis) joins by adding a param to the fixture.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from promptdeck.engine.quota_backend import (
    BudgetCounter,
    BudgetRefusal,
    QuotaBackend,
    Reservation,
    Spend,
    Window,
)
from promptdeck.engine.quota_memory import MemoryQuotas


@dataclass
class Counting:
    backend: QuotaBackend
    advance: Callable[[float], None]  # move the backend's clock on by this many seconds
    now: Callable[[], float]


class Clock:
    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


@pytest.fixture(params=["memory"])
async def counting(request: pytest.FixtureRequest) -> AsyncIterator[Counting]:
    clock = Clock()
    backend = MemoryQuotas(clock=clock)
    yield Counting(backend, clock.advance, clock)
    await backend.aclose()


def counter(key: str, cap: float, counting: Counting, lasts: float = 3600.0) -> BudgetCounter:
    return BudgetCounter(key, cap, counting.now() + lasts)


async def test_the_protocol_is_implemented(counting: Counting) -> None:
    assert isinstance(counting.backend, QuotaBackend)


async def test_exactly_n_of_many_concurrent_calls_are_admitted(counting: Counting) -> None:
    window = Window("rl:w:a:r", 10)
    results = await asyncio.gather(*(counting.backend.admit([window], []) for _ in range(200)))
    admitted = [r for r in results if r.admitted]
    assert len(admitted) == 10
    assert sorted(r.remaining for r in admitted) == list(range(10))
    refused = [r for r in results if not r.admitted]
    assert all(r.limit == 10 and r.remaining == 0 and r.refused_by == window.key for r in refused)
    assert all(0 < r.retry_after <= 60 for r in refused)


async def test_a_call_is_counted_in_every_window_or_none(counting: Counting) -> None:
    wide, narrow = Window("rl:w:wide:r", 100), Window("rl:w:narrow:r", 2)
    for _ in range(2):
        assert (await counting.backend.admit([wide, narrow], [])).admitted
    refused = await counting.backend.admit([wide, narrow], [])
    assert not refused.admitted and refused.refused_by == narrow.key and refused.limit == 2
    # the refused call was not counted in the wide window: 98 remain after two
    alone = await counting.backend.admit([wide], [])
    assert alone.admitted and alone.remaining == 97


async def test_the_window_slides(counting: Counting) -> None:
    window = Window("rl:w:slide:r", 2)
    assert (await counting.backend.admit([window], [])).admitted
    counting.advance(30)
    assert (await counting.backend.admit([window], [])).admitted
    refused = await counting.backend.admit([window], [])
    assert not refused.admitted
    assert 29 <= refused.retry_after <= 30  # the first leaves the window at 60 s
    counting.advance(30.5)
    assert (await counting.backend.admit([window], [])).admitted  # the first has left
    assert not (await counting.backend.admit([window], [])).admitted  # the second has not


async def test_tokens_are_counted_after_the_call(counting: Counting) -> None:
    tokens = Window("rl:w:t", 1000)
    first = await counting.backend.admit([], [tokens])
    assert first.admitted and first.remaining == 1000
    await counting.backend.count_tokens([tokens.key], 900)
    under = await counting.backend.admit([], [tokens])
    assert under.admitted and under.remaining == 100  # under the limit: admitted (its own unknown)
    await counting.backend.count_tokens([tokens.key], 200)
    over = await counting.backend.admit([], [tokens])
    assert not over.admitted and over.refused_by == tokens.key and 0 < over.retry_after <= 60
    counting.advance(61)
    assert (await counting.backend.admit([], [tokens])).admitted


async def test_no_windows_admits_without_a_limit(counting: Counting) -> None:
    admission = await counting.backend.admit([], [])
    assert admission.admitted and admission.limit == 0


async def test_a_reservation_is_refused_past_any_cap(counting: Counting) -> None:
    workspace, user = counter("bg:w:ws", 1.0, counting), counter("bg:w:user", 0.5, counting)
    held = await counting.backend.reserve([workspace, user], 0.3, hold_seconds=60)
    assert isinstance(held, Reservation)
    refused = await counting.backend.reserve([workspace, user], 0.3, hold_seconds=60)
    assert isinstance(refused, BudgetRefusal)
    assert refused.counter == user and refused.reserved_usd == pytest.approx(0.3)
    assert refused.remaining_usd == pytest.approx(0.2)
    spend = await counting.backend.spend([workspace.key, user.key])
    assert spend[workspace.key] == Spend(0.0, pytest.approx(0.3))  # the refusal held nothing


async def test_a_spend_equal_to_the_cap_fits(counting: Counting) -> None:
    cap = counter("bg:w:exact", 0.3, counting)
    for _ in range(3):
        assert isinstance(await counting.backend.reserve([cap], 0.1, hold_seconds=60), Reservation)
    assert isinstance(await counting.backend.reserve([cap], 0.1, hold_seconds=60), BudgetRefusal)


async def test_concurrent_reservations_never_exceed_the_cap(counting: Counting) -> None:
    cap = counter("bg:w:race", 1.0, counting)
    results = await asyncio.gather(
        *(counting.backend.reserve([cap], 0.07, hold_seconds=60) for _ in range(100))
    )
    assert sum(isinstance(r, Reservation) for r in results) == 14  # 14 * 0.07 = 0.98


async def test_settling_releases_the_hold_and_adds_the_actual_cost(counting: Counting) -> None:
    cap = counter("bg:w:settle", 1.0, counting)
    held = await counting.backend.reserve([cap], 0.6, hold_seconds=60)
    assert isinstance(held, Reservation)
    assert isinstance(await counting.backend.reserve([cap], 0.6, hold_seconds=60), BudgetRefusal)
    await counting.backend.settle(held, 0.05)
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend(pytest.approx(0.05), 0.0)
    assert isinstance(await counting.backend.reserve([cap], 0.6, hold_seconds=60), Reservation)


async def test_a_zero_amount_is_never_refused(counting: Counting) -> None:
    cap = counter("bg:w:zero", 0.1, counting)
    await counting.backend.seed(cap, 5.0)  # far over its cap already
    assert isinstance(await counting.backend.reserve([cap], 0.01, hold_seconds=60), BudgetRefusal)
    free = await counting.backend.reserve([cap], 0.0, hold_seconds=60)
    assert isinstance(free, Reservation) and free.amount_usd == 0
    await counting.backend.settle(free, 0.0)
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend(pytest.approx(5.0), 0.0)


async def test_seeding_only_sets_a_counter_that_does_not_exist(counting: Counting) -> None:
    cap = counter("bg:w:seed", 1.0, counting)
    assert await counting.backend.seed(cap, 0.9)
    assert not await counting.backend.seed(cap, 0.0)  # a second replica or restart keeps the spend
    assert (await counting.backend.spend([cap.key]))[cap.key].settled_usd == pytest.approx(0.9)
    assert isinstance(await counting.backend.reserve([cap], 0.2, hold_seconds=60), BudgetRefusal)
    assert isinstance(await counting.backend.reserve([cap], 0.1, hold_seconds=60), Reservation)


async def test_counters_expire_at_their_period_end(counting: Counting) -> None:
    cap = counter("bg:w:period", 1.0, counting, lasts=100)
    await counting.backend.seed(cap, 1.0)
    assert isinstance(await counting.backend.reserve([cap], 0.5, hold_seconds=60), BudgetRefusal)
    counting.advance(101)
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend()
    assert await counting.backend.seed(cap, 0.0)  # gone, so it may be seeded again


async def test_an_unsettled_reservation_is_released_after_its_hold(counting: Counting) -> None:
    cap = counter("bg:w:stale", 1.0, counting)
    assert isinstance(await counting.backend.reserve([cap], 0.8, hold_seconds=30), Reservation)
    assert isinstance(await counting.backend.reserve([cap], 0.8, hold_seconds=30), BudgetRefusal)
    counting.advance(31)  # its replica died and never settled it
    assert isinstance(await counting.backend.reserve([cap], 0.8, hold_seconds=30), Reservation)


async def test_memory_stays_bounded_whatever_subjects_callers_send() -> None:
    backend = MemoryQuotas(max_counters=100)
    for n in range(1000):
        await backend.admit([Window(f"rl:w:user{n}:r", 5)], [Window(f"rl:w:user{n}:t", 5)])
        await backend.reserve([BudgetCounter(f"bg:w:user{n}", 1.0, time.time() + 60)], 0.1, hold_seconds=9)
    sizes = [len(store) for store in (backend._requests, backend._tokens, backend._budgets)]
    assert sizes == [100, 100, 100]
    window = Window("rl:w:user0:r", 50)
    admitted = [(await backend.admit([window], [])).admitted for _ in range(60)]
    assert admitted == [True] * 50 + [False] * 10
    assert len(backend._requests[window.key]) == 50  # a window holds at most its limit
