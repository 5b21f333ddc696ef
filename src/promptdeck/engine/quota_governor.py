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

from cachetools import TTLCache

from promptdeck.domain.errors import BudgetExceeded, QuotaUnavailable, RateLimited
from promptdeck.domain.quotas import Budget, CallSubjects, WorkspaceQuotas, period_bounds
from promptdeck.engine.quota_backend import (
    Admission,
    BudgetCounter,
    BudgetRefusal,
    QuotaBackend,
    QuotaStoreUnavailable,
    Reservation,
    Spend,
    Window,
)
from promptdeck.engine.ttl_cache import TtlCache

log = logging.getLogger("promptdeck.quotas")

OPEN, CLOSED = "open", "closed"  # what a fail policy does when the counting store is unreachable
HOLD_SECONDS = 3600.0  # a reservation its replica never settled (it died) is released after this
SEED_SECONDS = 300.0  # how long a budget counter is taken as seeded before `seed` is asked again
WARN_EVERY_SECONDS = 10.0
LONG_SUBJECT = 64  # longer subjects (end users are the caller's to name) are hashed in keys


Matched = tuple[BudgetCounter, Budget, str]  # a budget's counter for one call, and its subject


class QuotaSource(Protocol):
    async def load(self, workspace_id: str) -> WorkspaceQuotas: ...


class SpendSource(Protocol):
    async def spent(
        self, workspace_id: str, subject_kind: str, subject: str, start: datetime, end: datetime
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class Hold:
    """What an admitted call holds until it is settled."""

    token_keys: tuple[str, ...]  # token windows its real usage is counted in
    reservation: Reservation | None  # money held on its budgets
    admission: Admission | None  # the tightest rate window, when limits applied


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self._spends = spends
        self.quotas: TtlCache[str, WorkspaceQuotas] = TtlCache(
            source.load, cache_ttl, max_entries=cache_entries
        )
        self._limits_open = limits_on_failure == OPEN
        self._budgets_open = budgets_on_failure == OPEN
        self._hold_seconds = hold_seconds
        self._clock = clock
        self._seeded: TTLCache[str, bool] = TTLCache(max(1, cache_entries * 10), SEED_SECONDS, timer=clock)
        self._warned_at = -math.inf

    def forget(self, workspace_id: str | None = None) -> None:
        """On `QuotasChanged` (services.subscribe_caches): the next call reads the new quotas
        (every workspace's when None: changes may have been missed)."""
        self.quotas.invalidate(workspace_id)

    async def admit(self, subjects: CallSubjects, worst_cost: Callable[[], float | None]) -> Hold | None:
        """Count the call in its rate windows and reserve its worst-case cost on its budgets,
        or raise `RateLimited` / `BudgetExceeded`. None: no quota applies (nothing to settle).
        `worst_cost` is asked only when a budget applies; None from it means an unknown price."""
        quotas = await self.quotas.get(subjects.workspace_id)
        if quotas.empty:
            return None
        requests, tokens = self._windows(quotas, subjects)
        admission = await self._admit(requests, tokens) if requests or tokens else None
        counters = self._counters(quotas, subjects)
        reservation = await self._reserve(subjects, counters, worst_cost) if counters else None
        if admission is None and reservation is None and not tokens:
            return None
        return Hold(tuple(w.key for w in tokens), reservation, admission)

    async def settle(self, hold: Hold, actual_usd: float, tokens: int) -> None:
        """Count the call's real tokens and settle its real cost. Never raises: the run is over."""
        try:
            if hold.token_keys and tokens > 0:
                await self.backend.count_tokens(hold.token_keys, tokens)
            if hold.reservation is not None:
                await self.backend.settle(hold.reservation, actual_usd)
        except QuotaStoreUnavailable as exc:
            self._warn("could not settle a call's tokens or cost: %s", exc)
        except Exception:
            log.exception("settling a call's tokens or cost failed")

    # ── rate limits ──────────────────────────────────────────────────────────

    def _windows(self, quotas: WorkspaceQuotas, subjects: CallSubjects) -> tuple[list[Window], list[Window]]:
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
        return requests, tokens

    async def _admit(self, requests: list[Window], tokens: list[Window]) -> Admission | None:
        try:
            admission = await self.backend.admit(requests, tokens)
        except QuotaStoreUnavailable as exc:
            if self._limits_open:
                self._warn("rate limits are not enforced while their store is unreachable: %s", exc)
                return None
            raise QuotaUnavailable(
                "rate limits cannot be checked: their store is unreachable; try again shortly"
            ) from exc
        if not admission.admitted:
            unit = "tokens" if (admission.refused_by or "").endswith(":t") else "requests"
            raise RateLimited(
                f"rate limit reached: {admission.limit} {unit} per minute; "
                f"try again in {math.ceil(admission.retry_after)} s",
                retry_after=max(admission.retry_after, 1.0),
                window=(admission.limit, admission.remaining, admission.reset_seconds),
            )
        return admission

    # ── budgets ──────────────────────────────────────────────────────────────

    def _counters(self, quotas: WorkspaceQuotas, subjects: CallSubjects) -> list[Matched]:
        now = datetime.fromtimestamp(self._clock(), UTC)
        found = []
        for budget in quotas.budgets:
            matched = subjects.matched(budget.subject_kind, budget.subject)
            if matched is None:
                continue
            start, end = period_bounds(budget.period, now)
            key = budget_key(subjects.workspace_id, budget, matched, start)
            found.append((BudgetCounter(key, budget.amount_usd, end.timestamp()), budget, matched))
        return found

    async def _reserve(
        self,
        subjects: CallSubjects,
        counters: list[Matched],
        worst_cost: Callable[[], float | None],
    ) -> Reservation | None:
        cost = worst_cost()
        if cost is None:
            raise BudgetExceeded(
                "this model has no known price, so a budget cannot hold its cost; set a price "
                "override for it in the workspace (docs/governance.md, Budgets)",
                retry_after=_until(counters[0][0].expires_at, self._clock()),
            )
        if cost <= 0:  # a zero-cost model (the embedded one) is never refused, nor counted
            return None
        try:
            await self._seed(subjects, counters)
            result = await self.backend.reserve(
                [c for c, _, _ in counters], cost, hold_seconds=self._hold_seconds
            )
        except QuotaStoreUnavailable as exc:
            if self._budgets_open:
                self._warn("budgets are not enforced while their store is unreachable: %s", exc)
                return None
            raise QuotaUnavailable(
                "budgets cannot be checked: their store is unreachable, and budgets fail closed "
                "(PROMPTDECK_BUDGETS_ON_STORE_FAILURE); try again shortly"
            ) from exc
        if isinstance(result, BudgetRefusal):
            raise _refusal(result, counters, cost, self._clock())
        return result

    async def _seed(self, subjects: CallSubjects, counters: list[Matched]) -> None:
        """Give each counter the spend so far in its period, once per process and counter (the
        backend keeps what it already has), so a restart or a new replica forgets nothing."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        for counter, budget, subject in counters:
            if counter.key in self._seeded:
                continue
            start, end = period_bounds(budget.period, now)
            try:
                spent = await self._spends.spent(
                    subjects.workspace_id, budget.subject_kind, subject, start, end
                )
            except Exception as exc:  # the database: budgets cannot be known either
                raise QuotaStoreUnavailable(f"reading the spend so far failed: {exc}") from exc
            await self.backend.seed(counter, spent)
            self._seeded[counter.key] = True

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
        """A warning at most every few seconds: an outage must not flood the log."""
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(message, exc)


def _refusal(refused: BudgetRefusal, counters: list[Matched], cost: float, now: float) -> BudgetExceeded:
    budget = next(b for c, b, _ in counters if c.key == refused.counter.key)
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
