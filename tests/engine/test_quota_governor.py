"""The governor: which counters a call touches, the hot path with no quotas, the fail policies."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from promptdeck.domain.errors import BudgetExceeded, QuotaUnavailable, RateLimited
from promptdeck.domain.quotas import NO_QUOTAS, Budget, CallSubjects, RateLimit, WorkspaceQuotas
from promptdeck.engine.quota_backend import (
    HOLD_SECONDS,
    Admission,
    BudgetCounter,
    QuotaStoreUnavailable,
    Settlement,
    Spend,
    Window,
)
from promptdeck.engine.quota_governor import Governor
from promptdeck.engine.quota_memory import MemoryQuotas
from promptdeck.engine.quota_settler import GATHER_SECONDS

ANN = CallSubjects("w1", "key1", "fast", "ann")


class Quotas:
    """Each workspace's quotas, as the store would load them; counts its loads."""

    def __init__(self, quotas: WorkspaceQuotas) -> None:
        self.quotas, self.loads = quotas, 0

    async def load(self, workspace_id: str) -> WorkspaceQuotas:
        self.loads += 1
        return self.quotas


class Spent:
    def __init__(self, usd: float = 0.0) -> None:
        self.usd, self.asked = usd, 0

    async def spent(
        self, workspace_id: str, kind: str, subject: str, start: datetime, end: datetime
    ) -> float:
        self.asked += 1
        return self.usd


class Counted(MemoryQuotas):
    """The in-process backend, counting the steps it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.trips = 0
        self.settled: list[list[Settlement]] = []

    async def admit(
        self,
        requests: Sequence[Window],
        tokens: Sequence[Window],
        counters: Sequence[BudgetCounter] = (),
        amount_usd: float = 0.0,
        *,
        reservation_id: str = "",
        hold_seconds: float = HOLD_SECONDS,
    ) -> Admission:
        self.trips += 1
        return await super().admit(
            requests, tokens, counters, amount_usd, reservation_id=reservation_id, hold_seconds=hold_seconds
        )

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        self.settled.append(list(settlements))
        await asyncio.sleep(0.01)  # a round trip
        await super().settle(settlements)


class Unreachable(MemoryQuotas):
    """A backend whose store is down (engine/quota_redis.py raises the same when Redis is)."""

    async def admit(
        self,
        requests: Sequence[Window],
        tokens: Sequence[Window],
        counters: Sequence[BudgetCounter] = (),
        amount_usd: float = 0.0,
        *,
        reservation_id: str = "",
        hold_seconds: float = HOLD_SECONDS,
    ) -> Admission:
        raise QuotaStoreUnavailable("connection refused")

    async def seed(self, spends: Sequence[tuple[BudgetCounter, float]]) -> list[bool]:
        raise QuotaStoreUnavailable("connection refused")

    async def spend(self, keys: Sequence[str]) -> Mapping[str, Spend]:
        raise QuotaStoreUnavailable("connection refused")


LIMITED = WorkspaceQuotas(limits=(RateLimit("l1", "end_user", "", requests_per_minute=1),))
BUDGETED = WorkspaceQuotas(budgets=(Budget("b1", "workspace", "", "day", 1.0),))


async def test_a_workspace_without_quotas_costs_no_backend_call() -> None:
    backend, source = Counted(), Quotas(NO_QUOTAS)
    governor = Governor(backend, source, Spent(), 60)
    for _ in range(100):
        assert await governor.admit(ANN, lambda: pytest.fail("no budget: the cost is not asked")) is None
    assert (backend.trips, source.loads) == (0, 1)  # loaded once, then cached


async def test_limits_count_per_subject_and_reload_when_changed() -> None:
    source = Quotas(LIMITED)
    governor = Governor(MemoryQuotas(), source, Spent(), 60)
    assert await governor.admit(ANN, lambda: 0.0) is not None
    with pytest.raises(RateLimited) as refused:
        await governor.admit(ANN, lambda: 0.0)
    assert refused.value.headers()["X-RateLimit-Limit"] == "1"
    await governor.admit(CallSubjects("w1", "key1", "fast", "bob"), lambda: 0.0)
    assert await governor.admit(CallSubjects("w1", "key1", "fast", None), lambda: 0.0) is None
    source.quotas = WorkspaceQuotas(limits=(RateLimit("l1", "end_user", "", requests_per_minute=5),))
    governor.forget("w1")
    await governor.admit(ANN, lambda: 0.0)
    assert source.loads == 2


async def test_a_budget_is_seeded_from_the_run_log_only_when_its_counter_is_absent() -> None:
    spends, backend = Spent(0.95), Counted()
    governor = Governor(backend, Quotas(BUDGETED), spends, 60)
    hold = await governor.admit(ANN, lambda: 0.05)
    assert hold is not None and hold.reservation is not None
    assert (spends.asked, backend.trips) == (1, 2)  # reported absent, seeded, asked again
    await governor.settle(hold, 0.01, 15)
    with pytest.raises(BudgetExceeded, match="budget exceeded"):
        await governor.admit(ANN, lambda: 0.05)
    assert await governor.admit(ANN, lambda: 0.0) is None  # zero cost: never refused
    assert (spends.asked, backend.trips) == (1, 3)  # the counter exists: no database read
    backend._budgets.clear()  # the store lost it (Redis restarted): seeded again on next use
    spends.usd = 0.5
    assert await governor.admit(ANN, lambda: 0.05) is not None
    assert spends.asked == 2


async def test_a_call_a_budget_refuses_is_not_counted_by_the_limits() -> None:
    both = WorkspaceQuotas((RateLimit("l1", "workspace", "", requests_per_minute=2),), BUDGETED.budgets)
    governor = Governor(MemoryQuotas(), Quotas(both), Spent(0.9), 60)
    for _ in range(3):
        with pytest.raises(BudgetExceeded):
            await governor.admit(ANN, lambda: 0.5)
    held = [await governor.admit(ANN, lambda: 0.01) for _ in range(2)]  # both fit the limit
    assert all(h is not None and h.reservation is not None for h in held)
    with pytest.raises(RateLimited):
        await governor.admit(ANN, lambda: 0.01)


async def test_a_counter_is_built_once_a_period_and_renewed_when_it_ends() -> None:
    day = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    clock = [day.timestamp()]
    backend = MemoryQuotas(clock=lambda: clock[0])
    spends = Spent(0.0)
    governor = Governor(backend, Quotas(BUDGETED), spends, 60, clock=lambda: clock[0])
    first = await governor.admit(ANN, lambda: 0.6)
    assert first is not None and first.reservation is not None
    [counter] = first.reservation.counters
    assert (
        counter.key.endswith(":20260301") and counter.expires_at == (day + timedelta(seconds=1)).timestamp()
    )
    with pytest.raises(BudgetExceeded):  # the same period's counter: 0.6 held of 1.0
        await governor.admit(ANN, lambda: 0.6)
    clock[0] += 2  # a new day: a new counter, seeded from the run log
    second = await governor.admit(ANN, lambda: 0.6)
    assert second is not None and second.reservation is not None
    assert second.reservation.counters[0].key.endswith(":20260302") and spends.asked == 2


async def test_a_shared_backend_settles_later_in_batches_and_drains_on_close() -> None:
    backend = Counted()
    governor = Governor(backend, Quotas(BUDGETED), Spent(), 60, settle_later=True)
    holds = [await governor.admit(ANN, lambda: 0.1) for _ in range(9)]
    for hold in holds:
        assert hold is not None
        await governor.settle(hold, 0.01, 10)  # returns at once: nothing is sent yet
    assert backend.settled == []
    await asyncio.sleep(0)  # the settler waits for company first
    assert backend.settled == []
    await asyncio.sleep(GATHER_SECONDS * 2)  # then sends all nine in one step
    assert [len(batch) for batch in backend.settled] == [9]
    last = await governor.admit(ANN, lambda: 0.1)
    assert last is not None and last.reservation is not None
    await governor.settle(last, 0.01, 10)
    await governor.aclose()  # sends what is still queued
    assert sum(len(batch) for batch in backend.settled) == 10
    key = last.reservation.counters[0].key
    assert (await backend.spend([key]))[key] == Spend(pytest.approx(0.1), 0.0)


async def test_limits_fail_open_and_budgets_closed_by_default(caplog: pytest.LogCaptureFixture) -> None:
    both = WorkspaceQuotas(LIMITED.limits, BUDGETED.budgets)
    governor = Governor(Unreachable(), Quotas(both), Spent(), 60)
    with pytest.raises(QuotaUnavailable) as refused:
        await governor.admit(ANN, lambda: 0.05)
    assert refused.value.code == "quota_store_unavailable"
    assert "rate limits are not enforced" in caplog.text  # the budget refused it, not the limit
    assert await governor.admit(ANN, lambda: 0.0) is None  # a free call needs no budget store


async def test_the_fail_policies_can_be_turned_around() -> None:
    governor = Governor(
        Unreachable(), Quotas(LIMITED), Spent(), 60, limits_on_failure="closed", budgets_on_failure="open"
    )
    with pytest.raises(QuotaUnavailable):
        await governor.admit(ANN, lambda: 0.05)
    governor = Governor(Unreachable(), Quotas(BUDGETED), Spent(), 60, budgets_on_failure="open")
    assert await governor.admit(ANN, lambda: 0.05) is None
