"""The counting semantics every quota backend must keep (engine/quota_backend.py).

Each test takes `counting`: a backend and a way to move its clock on. The in-process backend
is here; tests/engine/test_quota_redis.py runs the same tests on a real redis-server.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from promptdeck.engine import quota_memory
from promptdeck.engine.quota_backend import (
    Admission,
    BudgetCounter,
    QuotaBackend,
    Reservation,
    Settlement,
    Spend,
    UniqueIds,
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


class AsPlanned:
    """A backend called as the governor calls it: with the same tuple objects for the same
    windows and counters, call after call, so the in-process backend counts through the state it
    prepared for them (`_Slots`) rather than finding each window by its key."""

    def __init__(self, backend: QuotaBackend) -> None:
        self.backend = backend
        self._same: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def _tuple(self, items: Sequence[Any]) -> tuple[Any, ...]:
        found = tuple(items)
        return self._same.setdefault(found, found)

    async def admit(self, *arguments: Any, **options: Any) -> Admission:
        """The windows and counters (the sequences among the arguments) as the same tuples."""
        same = [self._tuple(a) if isinstance(a, list | tuple) else a for a in arguments]
        return await self.backend.admit(*same, **options)

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        await self.backend.settle(settlements)

    async def seed(self, spends: Sequence[tuple[BudgetCounter, float]]) -> list[bool]:
        return await self.backend.seed(spends)

    async def spend(self, keys: Sequence[str]) -> Mapping[str, Spend]:
        return await self.backend.spend(keys)

    async def aclose(self) -> None:
        await self.backend.aclose()


@pytest.fixture(params=["memory", "memory, as planned"])
async def counting(request: pytest.FixtureRequest) -> AsyncIterator[Counting]:
    clock = Clock()
    backend = MemoryQuotas(clock=clock)
    yield Counting(backend if request.param == "memory" else AsPlanned(backend), clock.advance, clock)
    await backend.aclose()


IDS = UniqueIds()


def counter(key: str, cap: float, counting: Counting, lasts: float = 3600.0) -> BudgetCounter:
    return BudgetCounter(key, cap, counting.now() + lasts)


async def reserve(
    counting: Counting,
    counters: list[BudgetCounter],
    amount: float,
    hold: float = 60,
    requests: tuple[Window, ...] = (),
) -> Admission:
    """An admission holding `amount` on `counters`, seeding (at 0) those not there yet, as the
    governor does."""
    backend = counting.backend
    admission = await backend.admit(
        requests, [], counters, amount, reservation_id=IDS.next(), hold_seconds=hold
    )
    if admission.unseeded:
        await backend.seed([(c, 0.0) for c in admission.unseeded])
        admission = await backend.admit(
            requests, [], counters, amount, reservation_id=IDS.next(), hold_seconds=hold
        )
    assert admission.decided
    return admission


def held(admission: Admission) -> Reservation:
    assert admission.admitted and admission.reservation is not None, admission
    return admission.reservation


def refused_by_budget(admission: Admission) -> bool:
    return not admission.admitted and admission.budget is not None


async def settle(
    counting: Counting,
    reservation: Reservation | None,
    usd: float,
    tokens: int = 0,
    keys: tuple[str, ...] = (),
) -> None:
    await counting.backend.settle([Settlement(keys, tokens, reservation, usd)])


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


async def test_a_call_is_counted_in_every_window_and_budget_or_none(counting: Counting) -> None:
    window, cap = Window("rl:w:both:r", 3), counter("bg:w:both", 1.0, counting)
    first = await reserve(counting, [cap], 0.6, requests=(window,))
    assert held(first).amount_usd == pytest.approx(0.6) and first.limit == 3 and first.remaining == 2
    # a budget refuses: the call is not counted in the window either
    over = await reserve(counting, [cap], 0.6, requests=(window,))
    assert refused_by_budget(over) and over.refused_by is None
    assert (await counting.backend.admit([window], [])).remaining == 1  # two counted, not three
    assert (await counting.backend.admit([window], [])).remaining == 0
    # a window refuses: nothing is held on the budget
    limited = await reserve(counting, [cap], 0.1, requests=(window,))
    assert not limited.admitted and limited.refused_by == window.key and limited.budget is None
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend(0.0, pytest.approx(0.6))


async def test_absent_budget_counters_are_reported_then_seeded(counting: Counting) -> None:
    window = Window("rl:w:seeded:r", 5)
    old, new = counter("bg:w:old", 1.0, counting), counter("bg:w:new", 1.0, counting)
    assert await counting.backend.seed([(old, 0.5)]) == [True]
    found = await counting.backend.admit([window], [], [old, new], 0.2, reservation_id=IDS.next())
    assert not found.admitted and found.unseeded == (new,)  # only the absent one
    assert (await counting.backend.admit([window], [])).remaining == 4  # nothing was counted
    assert await counting.backend.seed([(old, 0.0), (new, 0.7)]) == [False, True]
    admitted = await counting.backend.admit([window], [], [old, new], 0.2, reservation_id=IDS.next())
    assert held(admitted).counters == (old, new) and admitted.remaining == 3
    spend = await counting.backend.spend([old.key, new.key])
    assert spend[old.key] == Spend(pytest.approx(0.5), pytest.approx(0.2))
    assert spend[new.key] == Spend(pytest.approx(0.7), pytest.approx(0.2))
    # without an amount no budget is asked about, seeded or not
    free = await counting.backend.admit([], [], [counter("bg:w:never", 1.0, counting)], 0.0)
    assert free.admitted and free.reservation is None


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


async def test_a_lowered_limit_waits_until_enough_calls_have_aged_out(counting: Counting) -> None:
    for _ in range(3):
        assert (await counting.backend.admit([Window("rl:w:lowered:r", 3)], [])).admitted
        counting.advance(10)
    refused = await counting.backend.admit([Window("rl:w:lowered:r", 2)], [])  # 3 held, 2 allowed
    # room once only one is left: the second call, made 20 s ago, leaves in 40 s
    assert not refused.admitted and 39 <= refused.retry_after <= 40


async def test_tokens_are_counted_after_the_call(counting: Counting) -> None:
    tokens = Window("rl:w:t", 1000)
    first = await counting.backend.admit([], [tokens])
    assert first.admitted and first.remaining == 1000
    await settle(counting, None, 0.0, 900, (tokens.key,))
    under = await counting.backend.admit([], [tokens])
    assert under.admitted and under.remaining == 100  # under the limit: admitted (its own unknown)
    await settle(counting, None, 0.0, 200, (tokens.key,))
    over = await counting.backend.admit([], [tokens])
    assert not over.admitted and over.refused_by == tokens.key and 0 < over.retry_after <= 60
    counting.advance(61)
    assert (await counting.backend.admit([], [tokens])).admitted


async def test_tokens_leave_the_window_second_by_second(counting: Counting) -> None:
    """Redis keeps a token window's running total and recounts once its oldest second has left:
    the total must follow the buckets as they leave, one by one, whatever the order of steps."""
    tokens = Window("rl:w:seconds:t", 1000)
    counting.advance(math.ceil(counting.now()) - counting.now())  # t=0 on a whole second
    for used, then in ((500, 20), (300, 20), (100, 19.5)):
        await settle(counting, None, 0.0, used, (tokens.key,))
        counting.advance(then)
    # t=59.5: the buckets of t=0, 20 and 40 hold 900, and the first is about to leave
    assert (await counting.backend.admit([], [tokens])).remaining == 100
    await settle(counting, None, 0.0, 200, (tokens.key,))  # 1,100: full
    over = await counting.backend.admit([], [tokens])
    assert not over.admitted and 0 < over.retry_after <= 1  # the 500 of t=0 leaves at once
    counting.advance(1)
    after = await counting.backend.admit([], [tokens])
    assert after.admitted and after.remaining == 400  # 300 + 100 + 200 left
    counting.advance(20)
    await settle(counting, None, 0.0, 50, (tokens.key,))  # counted after the 300 left
    assert (await counting.backend.admit([], [tokens])).remaining == 650  # 100 + 200 + 50
    counting.advance(61)
    assert (await counting.backend.admit([], [tokens])).remaining == 1000  # all gone


async def test_no_windows_admits_without_a_limit(counting: Counting) -> None:
    admission = await counting.backend.admit([], [])
    assert admission.admitted and admission.limit == 0


async def test_a_reservation_is_refused_past_any_cap(counting: Counting) -> None:
    workspace, user = counter("bg:w:ws", 1.0, counting), counter("bg:w:user", 0.5, counting)
    held(await reserve(counting, [workspace, user], 0.3))
    refused = await reserve(counting, [workspace, user], 0.3)
    assert refused.budget is not None and not refused.admitted
    assert refused.budget.counter == user and refused.budget.reserved_usd == pytest.approx(0.3)
    assert refused.budget.remaining_usd == pytest.approx(0.2)
    spend = await counting.backend.spend([workspace.key, user.key])
    assert spend[workspace.key] == Spend(0.0, pytest.approx(0.3))  # the refusal held nothing


async def test_a_spend_equal_to_the_cap_fits(counting: Counting) -> None:
    cap = counter("bg:w:exact", 0.3, counting)
    for _ in range(3):
        held(await reserve(counting, [cap], 0.1))
    assert refused_by_budget(await reserve(counting, [cap], 0.1))


async def test_concurrent_reservations_never_exceed_the_cap(counting: Counting) -> None:
    cap = counter("bg:w:race", 1.0, counting)
    await counting.backend.seed([(cap, 0.0)])
    results = await asyncio.gather(
        *(counting.backend.admit([], [], [cap], 0.07, reservation_id=IDS.next()) for _ in range(100))
    )
    assert sum(r.admitted for r in results) == 14  # 14 * 0.07 = 0.98
    assert len({held(r).id for r in results if r.admitted}) == 14


async def test_settling_releases_the_hold_and_adds_the_actual_cost(counting: Counting) -> None:
    cap = counter("bg:w:settle", 1.0, counting)
    reservation = held(await reserve(counting, [cap], 0.6))
    assert refused_by_budget(await reserve(counting, [cap], 0.6))
    await settle(counting, reservation, 0.05)
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend(pytest.approx(0.05), 0.0)
    held(await reserve(counting, [cap], 0.6))


async def test_a_batch_settles_many_calls_in_one_step(counting: Counting) -> None:
    cap, other = counter("bg:w:batch", 10.0, counting), counter("bg:w:other", 10.0, counting)
    tokens = Window("rl:w:batch:t", 1000)
    reservations = [held(await reserve(counting, [cap, other], 0.5)) for _ in range(6)]
    lone = held(await reserve(counting, [cap], 0.25))
    batch = [Settlement((tokens.key,), 10, r, 0.1) for r in reservations]
    batch += [Settlement((), 0, lone, 0.2), Settlement((tokens.key,), 35, None, 0.0)]
    await counting.backend.settle(batch)
    spend = await counting.backend.spend([cap.key, other.key])
    assert spend[cap.key] == Spend(pytest.approx(0.8), pytest.approx(0.0, abs=1e-9))
    assert spend[other.key] == Spend(pytest.approx(0.6), pytest.approx(0.0, abs=1e-9))
    assert (await counting.backend.admit([], [tokens])).remaining == 1000 - 95
    await counting.backend.settle([])  # nothing to do is fine
    await counting.backend.settle(batch[:1])  # settled twice: its hold is gone, its cost counts
    assert (await counting.backend.spend([cap.key]))[cap.key].reserved_usd == pytest.approx(0.0, abs=1e-9)


async def test_a_zero_amount_is_never_refused(counting: Counting) -> None:
    cap = counter("bg:w:zero", 0.1, counting)
    await counting.backend.seed([(cap, 5.0)])  # far over its cap already
    assert refused_by_budget(await reserve(counting, [cap], 0.01))
    free = await reserve(counting, [cap], 0.0)
    assert free.admitted and free.reservation is None
    await settle(counting, free.reservation, 0.0)
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend(pytest.approx(5.0), 0.0)


async def test_seeding_only_sets_a_counter_that_does_not_exist(counting: Counting) -> None:
    cap = counter("bg:w:seed", 1.0, counting)
    assert await counting.backend.seed([(cap, 0.9)]) == [True]
    assert await counting.backend.seed([(cap, 0.0)]) == [False]  # a second replica keeps the spend
    assert (await counting.backend.spend([cap.key]))[cap.key].settled_usd == pytest.approx(0.9)
    assert refused_by_budget(await reserve(counting, [cap], 0.2))
    held(await reserve(counting, [cap], 0.1))


async def test_counters_expire_at_their_period_end(counting: Counting) -> None:
    cap = counter("bg:w:period", 1.0, counting, lasts=100)
    await counting.backend.seed([(cap, 1.0)])
    assert refused_by_budget(await reserve(counting, [cap], 0.5))
    counting.advance(101)
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend()
    assert (await counting.backend.admit([], [], [cap], 0.5)).unseeded == (cap,)
    assert await counting.backend.seed([(cap, 0.0)]) == [True]  # gone, so it may be seeded again


async def test_an_unsettled_reservation_is_released_after_its_hold(counting: Counting) -> None:
    cap = counter("bg:w:stale", 1.0, counting)
    held(await reserve(counting, [cap], 0.8, hold=30))
    counting.advance(10)
    later = held(await reserve(counting, [cap], 0.15, hold=30))
    assert refused_by_budget(await reserve(counting, [cap], 0.8, hold=30))
    counting.advance(21)  # the first's replica died and never settled it; the second's has not
    assert (await counting.backend.spend([cap.key]))[cap.key].reserved_usd == pytest.approx(0.15)
    held(await reserve(counting, [cap], 0.8, hold=30))
    await settle(counting, later, 0.01)
    counting.advance(31)
    assert (await counting.backend.spend([cap.key]))[cap.key] == Spend(pytest.approx(0.01), 0.0)


async def test_memory_stays_bounded_whatever_subjects_callers_send() -> None:
    backend = MemoryQuotas(max_counters=100)
    for n in range(1000):
        await backend.admit([Window(f"rl:w:user{n}:r", 5)], [Window(f"rl:w:user{n}:t", 5)])
        budget = BudgetCounter(f"bg:w:user{n}", 1.0, time.time() + 60)
        await backend.seed([(budget, 0.0)])
        assert (await backend.admit([], [], [budget], 0.1, reservation_id=IDS.next())).admitted
    sizes = [len(store) for store in (backend._requests, backend._tokens, backend._budgets)]
    assert sizes == [100, 100, 100]
    window = Window("rl:w:user0:r", 50)
    admitted = [(await backend.admit([window], [])).admitted for _ in range(60)]
    assert admitted == [True] * 50 + [False] * 10
    assert len(backend._requests[window.key]) == 50  # a window holds at most its limit


async def test_a_planned_call_finds_its_windows_again_once_the_store_forgot_them() -> None:
    backend = MemoryQuotas(max_counters=1)
    planned = (Window("rl:w:planned:r", 1),)
    assert (await backend.admit(planned, ())).admitted
    assert not (await backend.admit(planned, ())).admitted  # its window is full
    assert (await backend.admit([Window("rl:w:other:r", 1)], [])).admitted  # forgets the first
    assert (await backend.admit(planned, ())).admitted  # counted afresh, not in the forgotten log
    assert len(backend._requests[planned[0].key]) == 1


async def test_prepared_combinations_stay_bounded_whatever_subjects_callers_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quota_memory, "MAX_PREPARED", 10)
    backend = MemoryQuotas(max_counters=50)
    for n in range(200):  # a caller naming a new end user every call: a new plan each time
        assert (await backend.admit((Window(f"rl:w:user{n}:r", 5),), ())).admitted
        assert len(backend._slots) <= 10
