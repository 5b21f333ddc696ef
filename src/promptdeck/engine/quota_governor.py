"""Admits or refuses each call under its workspace's rate limits and budgets, and settles it.

The engine asks `admit` after a call's version and candidates are resolved and before any
provider call; `settle` runs when the invocation closes, whatever its ending. A workspace's
limits and budgets are cached (invalidated by `QuotasChanged`), so a workspace with none costs
one cache lookup and no backend call. The counting itself is the backend's
(engine/quota_backend.py); which windows and counters a call touches is decided here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from promptdeck.domain.errors import BudgetExceeded, QuotaUnavailable, RateLimited
from promptdeck.domain.quotas import Budget, CallSubjects, WorkspaceQuotas, period_bounds
from promptdeck.domain.values import immutable
from promptdeck.engine.quota_backend import (
    HOLD_SECONDS,
    Admission,
    BudgetCounter,
    BudgetRefusal,
    QuotaBackend,
    QuotaStoreUnavailable,
    Reservation,
    Settlement,
    Spend,
    UniqueIds,
    Window,
)
from promptdeck.engine.quota_memory import MemoryQuotas
from promptdeck.engine.quota_settler import Settler
from promptdeck.engine.ttl_cache import MISSING, TtlCache

log = logging.getLogger("promptdeck.quotas")

OPEN, CLOSED = "open", "closed"  # what a fail policy does when the counting store is unreachable
WARN_EVERY_SECONDS = 10.0
LONG_SUBJECT = 64  # longer subjects (end users are the caller's to name) are hashed in keys


class QuotaSource(Protocol):
    async def load(self, workspace_id: str) -> WorkspaceQuotas: ...


class SpendSource(Protocol):
    async def spent(
        self, workspace_id: str, subject_kind: str, subject: str, start: datetime, end: datetime
    ) -> float: ...


@immutable
class Hold:
    """What an admitted call holds until it is settled."""

    token_keys: tuple[str, ...]  # token windows its real usage is counted in
    reservation: Reservation | None  # money held on its budgets


@dataclass(slots=True)
class _Period:
    """One budget subject's counter in its current period, made once per period (no date
    arithmetic per call): the key names the period's start, and it expires at its end."""

    workspace_id: str
    budget: Budget
    subject: str
    counter: BudgetCounter | None = None
    start: datetime | None = None
    end: datetime | None = None

    def current(self, now: float) -> BudgetCounter:
        if self.counter is None or now >= self.counter.expires_at:
            self.start, self.end = period_bounds(self.budget.period, datetime.fromtimestamp(now, UTC))
            key = budget_key(self.workspace_id, self.budget, self.subject, self.start)
            self.counter = BudgetCounter(key, self.budget.amount_usd, self.end.timestamp())
        return self.counter


@dataclass(slots=True)
class _Plan:
    """What one workspace's quotas mean for one combination of subjects: its windows and budget
    counters, worked out once and reused by every call of that combination until the quotas
    change (a new `WorkspaceQuotas` object) or a period ends."""

    quotas: WorkspaceQuotas
    requests: tuple[Window, ...]
    tokens: tuple[Window, ...]
    token_keys: tuple[str, ...]
    periods: tuple[_Period, ...]
    counters: tuple[BudgetCounter, ...] = ()
    renew_at: float = -math.inf  # when the first of `counters` ends its period

    def counters_at(self, now: float) -> tuple[BudgetCounter, ...]:
        if now >= self.renew_at:
            self.counters = tuple(p.current(now) for p in self.periods)
            self.renew_at = min(c.expires_at for c in self.counters)
        return self.counters

    def period_of(self, counter: BudgetCounter) -> _Period:
        return next(p for p in self.periods if p.counter is not None and p.counter.key == counter.key)


class Governor:
    def __init__(
        self,
        backend: QuotaBackend,
        source: QuotaSource,
        spends: SpendSource,
        cache_ttl: float,
        *,
        limits_on_failure: str = OPEN,
        budgets_on_failure: str = CLOSED,
        hold_seconds: float = HOLD_SECONDS,
        cache_entries: int = TtlCache.MAX_ENTRIES,
        settle_later: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        # Counted in this process (not a subclass, which may count otherwise): called without a
        # coroutine, as there is nothing to wait for.
        self._memory = backend if type(backend) is MemoryQuotas else None
        self._spends = spends
        self.quotas: TtlCache[str, WorkspaceQuotas] = TtlCache(
            source.load, cache_ttl, max_entries=cache_entries
        )
        self._limits_open = limits_on_failure == OPEN
        self._budgets_open = budgets_on_failure == OPEN
        self._hold_seconds = hold_seconds
        self._clock = clock
        self._plans: dict[tuple[str, str | None, str, str | None], _Plan] = {}
        self._max_plans = max(1, cache_entries)
        self._ids = UniqueIds()
        # A shared backend settles from a background task, in batches (engine/quota_settler.py).
        self.settler = Settler(backend, self._warn) if settle_later else None
        self._warned_at: dict[str, float] = {}  # each warning's last time

    def forget(self, workspace_id: str | None = None) -> None:
        """On `QuotasChanged` (services.subscribe_caches): the next call reads the new quotas
        (every workspace's when None: changes may have been missed)."""
        self.quotas.invalidate(workspace_id)

    async def admit(self, subjects: CallSubjects, worst_cost: Callable[[], float | None]) -> Hold | None:
        """Count the call in its rate windows and reserve its worst-case cost on its budgets, in
        one step, or raise `RateLimited` / `BudgetExceeded` having counted nothing. None: no
        quota applies (nothing to settle). `worst_cost` is asked only when a budget applies;
        None from it means an unknown price."""
        quotas = self.quotas.cached(subjects.workspace_id)
        if quotas is MISSING:
            quotas = await self.quotas.get(subjects.workspace_id)
        if quotas.empty:
            return None
        plan = self._plan(quotas, subjects)
        counters: tuple[BudgetCounter, ...] = ()
        cost = 0.0
        if plan.periods:
            now = self._clock()
            found = worst_cost()
            if found is None:
                raise BudgetExceeded(
                    "this model has no known price, so a budget cannot hold its cost; set a price "
                    "override for it in the workspace (docs/governance.md, Budgets)",
                    retry_after=_until(plan.counters_at(now)[0].expires_at, now),
                )
            if found > 0:  # a zero-cost model (the embedded one) is never refused, nor counted
                cost, counters = found, plan.counters_at(now)
        if not plan.requests and not plan.tokens and not counters:
            return None
        rid = self._ids.next() if counters else ""
        hold = self._hold_seconds
        try:
            if self._memory is not None:
                admission = self._memory.admit_now(plan.requests, plan.tokens, counters, cost, rid, hold)
            else:
                admission = await self.backend.admit(
                    plan.requests, plan.tokens, counters, cost, reservation_id=rid, hold_seconds=hold
                )
            if admission.unseeded:  # budget counters the backend does not hold yet
                admission = await self._seeded(plan, subjects, counters, cost, rid, admission.unseeded)
        except QuotaStoreUnavailable as exc:
            self._unavailable(plan, counters, exc)  # raises unless every feature fails open
            return None
        if admission.budget is not None:
            raise _refusal(admission.budget, plan, cost, self._clock())
        if not admission.admitted:
            unit = "tokens" if (admission.refused_by or "").endswith(":t") else "requests"
            raise RateLimited(
                f"rate limit reached: {admission.limit} {unit} per minute; "
                f"try again in {math.ceil(admission.retry_after)} s",
                retry_after=max(admission.retry_after, 1.0),
                window=(admission.limit, admission.remaining, admission.reset_seconds),
            )
        return Hold(plan.token_keys, admission.reservation)

    async def settle(self, hold: Hold, actual_usd: float, tokens: int) -> None:
        """Count the call's real tokens and settle its real cost, in one step (with a shared
        backend, queued for the settler). Never raises: the run is over."""
        if hold.reservation is None and (tokens <= 0 or not hold.token_keys):
            return
        settlement = Settlement(hold.token_keys, tokens, hold.reservation, actual_usd)
        if self._memory is not None:
            self._memory.settle_now((settlement,))
            return
        if self.settler is not None:
            await self.settler.put(settlement)
            return
        try:
            await self.backend.settle([settlement])
        except QuotaStoreUnavailable as exc:
            self._warn("could not settle a call's tokens or cost: %s", exc)
        except Exception:
            log.exception("settling a call's tokens or cost failed")

    async def aclose(self) -> None:
        """Send the settlements still queued, then close the backend (services.stop, after the
        engine closed its open runs: they settled)."""
        if self.settler is not None:
            await self.settler.aclose()
        await self.backend.aclose()

    async def _seeded(
        self,
        plan: _Plan,
        subjects: CallSubjects,
        counters: tuple[BudgetCounter, ...],
        cost: float,
        rid: str,
        absent: tuple[BudgetCounter, ...],
    ) -> Admission:
        """The admission asked again once the absent budget counters are seeded from the run log:
        the database is read only then, once per counter and period (or after Redis lost the
        counter), never in the steady state."""
        await self._seed(plan, subjects, absent)
        admission = await self.backend.admit(
            plan.requests, plan.tokens, counters, cost, reservation_id=rid, hold_seconds=self._hold_seconds
        )
        if not admission.decided:  # dropped again at once: the store is not keeping them
            raise QuotaStoreUnavailable("budget counters vanished as soon as they were seeded")
        return admission

    async def _seed(self, plan: _Plan, subjects: CallSubjects, absent: tuple[BudgetCounter, ...]) -> None:
        """Give each absent counter the spend so far in its period (set only if still absent: the
        backend keeps what another replica or call seeded first), so a restart, a new replica or
        a Redis that lost it forgets nothing."""
        spends = []
        for counter in absent:
            period = plan.period_of(counter)
            assert period.start is not None and period.end is not None
            try:
                kind = period.budget.subject_kind
                spent = await self._spends.spent(
                    subjects.workspace_id, kind, period.subject, period.start, period.end
                )
            except Exception as exc:  # the database: budgets cannot be known either
                raise QuotaStoreUnavailable(f"reading the spend so far failed: {exc}") from exc
            spends.append((counter, spent))
        await self.backend.seed(spends)

    def _unavailable(
        self, plan: _Plan, counters: tuple[BudgetCounter, ...], exc: QuotaStoreUnavailable
    ) -> None:
        """The fail policies: a feature that fails closed refuses the call; one that fails open
        lets it through, with a warning."""
        limited = bool(plan.requests or plan.tokens)
        if limited and self._limits_open:
            self._warn("rate limits are not enforced while their store is unreachable: %s", exc)
        if counters and not self._budgets_open:
            raise QuotaUnavailable(
                "budgets cannot be checked: their store is unreachable, and budgets fail closed "
                "(PROMPTDECK_BUDGETS_ON_STORE_FAILURE); try again shortly"
            ) from exc
        if limited and not self._limits_open:
            raise QuotaUnavailable(
                "rate limits cannot be checked: their store is unreachable; try again shortly"
            ) from exc
        if counters:
            self._warn("budgets are not enforced while their store is unreachable: %s", exc)

    # ── which windows and counters a call touches ───────────────────────────

    def _plan(self, quotas: WorkspaceQuotas, subjects: CallSubjects) -> _Plan:
        who = (subjects.workspace_id, subjects.key_id, subjects.deployment, subjects.end_user)
        plan = self._plans.get(who)
        if plan is not None and plan.quotas is quotas:
            return plan
        requests: list[Window] = []
        tokens: list[Window] = []
        for limit in quotas.limits:
            matched = subjects.matched(limit.subject_kind, limit.subject)
            if matched is None:
                continue
            key = f"rl:{subjects.workspace_id}:{limit.id}:{_short(matched)}"
            if limit.requests_per_minute is not None:
                requests.append(Window(key + ":r", limit.requests_per_minute))
            if limit.tokens_per_minute is not None:
                tokens.append(Window(key + ":t", limit.tokens_per_minute))
        periods = []
        for budget in quotas.budgets:
            matched = subjects.matched(budget.subject_kind, budget.subject)
            if matched is not None:
                periods.append(_Period(subjects.workspace_id, budget, matched))
        plan = _Plan(quotas, tuple(requests), tuple(tokens), tuple(w.key for w in tokens), tuple(periods))
        self._plans.pop(who, None)
        if len(self._plans) >= self._max_plans:  # bounded: the oldest combination goes first
            del self._plans[next(iter(self._plans))]
        self._plans[who] = plan
        return plan

    async def spend(self, workspace_id: str, budget: Budget, subject: str) -> Spend | None:
        """What the backend holds now for one budget subject in its current period: settled and
        reserved by calls in flight (None: no counter yet, or its store is unreachable). For the
        API's and console's spend display (docs/governance.md, Budgets)."""
        start, _ = period_bounds(budget.period, datetime.fromtimestamp(self._clock(), UTC))
        key = budget_key(workspace_id, budget, subject, start)
        try:
            return (await self.backend.spend([key])).get(key)
        except QuotaStoreUnavailable:
            return None

    def _warn(self, message: str, exc: Exception) -> None:
        """Each warning at most every few seconds: an outage must not flood the log, nor one
        warning (a late settlement's) hide another (limits not enforced)."""
        now = time.monotonic()
        if now - self._warned_at.get(message, -math.inf) >= WARN_EVERY_SECONDS:
            self._warned_at[message] = now
            log.warning(message, exc)


def _refusal(refused: BudgetRefusal, plan: _Plan, cost: float, now: float) -> BudgetExceeded:
    budget = plan.period_of(refused.counter).budget
    whose = "the workspace" if budget.subject_kind == "workspace" else budget.subject_kind.replace("_", " ")
    # Room may come back when calls in flight settle below their reservations; else at period end.
    fits_later = refused.settled_usd + cost <= refused.counter.cap_usd
    return BudgetExceeded(
        f"budget exceeded: {whose}'s {budget.period}ly budget is ${budget.amount_usd:g}; "
        f"${refused.settled_usd:.6f} spent and ${refused.reserved_usd:.6f} held by calls in flight "
        f"leave ${refused.remaining_usd:.6f}, and this call may cost up to ${cost:.6f}",
        retry_after=1.0 if fits_later else _until(refused.counter.expires_at, now),
    )


def budget_key(workspace_id: str, budget: Budget, subject: str, start: datetime) -> str:
    """The counter of one budget subject in the period starting at `start`."""
    return f"bg:{workspace_id}:{budget.id}:{_short(subject)}:{start:%Y%m%d}"


def _until(moment: float, now: float) -> float:
    return max(moment - now, 1.0)


def _short(subject: str) -> str:
    if len(subject) <= LONG_SUBJECT and ":" not in subject:
        return subject
    return "h" + hashlib.sha256(subject.encode()).hexdigest()[:32]
