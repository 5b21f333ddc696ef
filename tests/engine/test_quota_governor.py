"""The governor: which counters a call touches, the hot path with no quotas, the fail policies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pytest

from promptdeck.domain.errors import BudgetExceeded, QuotaUnavailable, RateLimited
from promptdeck.domain.quotas import NO_QUOTAS, Budget, CallSubjects, RateLimit, WorkspaceQuotas
from promptdeck.engine.quota_backend import (
    Admission,
    BudgetCounter,
    BudgetRefusal,
    QuotaStoreUnavailable,
    Reservation,
    Spend,
    Window,
)
from promptdeck.engine.quota_governor import Governor
from promptdeck.engine.quota_memory import MemoryQuotas

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
    """The in-process backend, counting the round trips it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.trips = 0

    async def admit(self, requests: Sequence[Window], tokens: Sequence[Window]) -> Admission:
        self.trips += 1
        return await super().admit(requests, tokens)

    async def reserve(
        self, counters: Sequence[BudgetCounter], amount_usd: float, *, hold_seconds: float
    ) -> Reservation | BudgetRefusal:
        self.trips += 1
        return await super().reserve(counters, amount_usd, hold_seconds=hold_seconds)


class Unreachable(MemoryQuotas):
    """A backend whose store is down (engine/quota_redis.py raises the same when Redis is)."""

    async def admit(self, requests: Sequence[Window], tokens: Sequence[Window]) -> Admission:
        raise QuotaStoreUnavailable("connection refused")

    async def reserve(
        self, counters: Sequence[BudgetCounter], amount_usd: float, *, hold_seconds: float
    ) -> Reservation | BudgetRefusal:
        raise QuotaStoreUnavailable("connection refused")

    async def seed(self, counter: BudgetCounter, spent_usd: float) -> bool:
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


async def test_a_budget_is_seeded_once_with_the_spend_so_far() -> None:
    spends = Spent(0.95)
    governor = Governor(MemoryQuotas(), Quotas(BUDGETED), spends, 60)
    hold = await governor.admit(ANN, lambda: 0.05)
    assert hold is not None and hold.reservation is not None
    await governor.settle(hold, 0.01, 15)
    with pytest.raises(BudgetExceeded, match="budget exceeded"):
        await governor.admit(ANN, lambda: 0.05)
    assert await governor.admit(ANN, lambda: 0.0) is None  # zero cost: never refused
    assert spends.asked == 1


async def test_limits_fail_open_and_budgets_closed_by_default(caplog: pytest.LogCaptureFixture) -> None:
    both = WorkspaceQuotas(LIMITED.limits, BUDGETED.budgets)
    governor = Governor(Unreachable(), Quotas(both), Spent(), 60)
    with pytest.raises(QuotaUnavailable) as refused:
        await governor.admit(ANN, lambda: 0.05)
    assert refused.value.code == "quota_store_unavailable"
    assert "rate limits are not enforced" in caplog.text
    assert await governor.admit(ANN, lambda: 0.0) is None  # a free call needs no budget store


async def test_the_fail_policies_can_be_turned_around() -> None:
    governor = Governor(
        Unreachable(), Quotas(LIMITED), Spent(), 60, limits_on_failure="closed", budgets_on_failure="open"
    )
    with pytest.raises(QuotaUnavailable):
        await governor.admit(ANN, lambda: 0.05)
    governor = Governor(Unreachable(), Quotas(BUDGETED), Spent(), 60, budgets_on_failure="open")
    assert await governor.admit(ANN, lambda: 0.05) is None
