"""Rate-limit and budget counters in this process: correct for one replica (docs/governance.md).

Every method runs without awaiting between its check and its count, so on the event loop each
is atomic, as a Lua script is in Redis (engine/quota_redis.py). Memory stays bounded whatever
callers send: a request window holds at most its limit's timestamps, a token window at most 60
one-second buckets, and there are at most `max_counters` windows and budget counters, the least
recently used forgotten first (a window idle for a minute loses nothing; a forgotten budget
counter is reported unseeded and seeded again from the run log).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from promptdeck.engine.quota_backend import (
    ADMITTED_WITHOUT_LIMITS,
    HOLD_SECONDS,
    WINDOW_SECONDS,
    Admission,
    BudgetCounter,
    BudgetRefusal,
    Reservation,
    Settlement,
    Spend,
    Window,
)

EPSILON_USD = 1e-9  # float sums: a spend equal to its cap must fit
T = TypeVar("T")


@dataclass(slots=True)
class _Tokens:
    buckets: deque[list[int]] = field(default_factory=deque)  # [whole second, tokens], oldest first
    total: int = 0

    def trim(self, now: float) -> None:
        while self.buckets and self.buckets[0][0] <= now - WINDOW_SECONDS:
            self.total -= self.buckets.popleft()[1]

    def add(self, second: int, tokens: int) -> None:
        if self.buckets and self.buckets[-1][0] == second:
            self.buckets[-1][1] += tokens
        else:
            self.buckets.append([second, tokens])
        self.total += tokens


@dataclass(slots=True)
class _Budget:
    """A counter's settled spend and its holds, with their running total: a call reads the total,
    and walks the holds only once the earliest of them has passed its release time."""

    expires_at: float
    settled: float = 0.0
    held: dict[str, tuple[float, float]] = field(default_factory=dict)  # id: (amount, release at)
    total_held: float = 0.0
    earliest: float = math.inf  # no hold is released before this

    def reserved(self, now: float) -> float:
        if now >= self.earliest:  # a replica never settled these (it died): release them
            for stale in [rid for rid, (_, until) in self.held.items() if until <= now]:
                del self.held[stale]
            self.total_held = sum(amount for amount, _ in self.held.values())
            self.earliest = min((until for _, until in self.held.values()), default=math.inf)
        return self.total_held

    def hold(self, rid: str, amount: float, until: float) -> None:
        self.held[rid] = (amount, until)
        self.total_held += amount
        self.earliest = min(self.earliest, until)

    def release(self, rid: str) -> None:
        found = self.held.pop(rid, None)
        if found is not None:
            self.total_held = max(self.total_held - found[0], 0.0) if self.held else 0.0


class _Lru(OrderedDict[str, T]):
    """A mapping of at most `bound` entries; `touch` marks one as just used."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = max(1, bound)

    def touch(self, key: str, make: Callable[[], T]) -> T:
        value = self.get(key)
        if value is None:
            value = self[key] = make()
            if len(self) > self.bound:
                self.popitem(last=False)
        else:
            self.move_to_end(key)
        return value


class MemoryQuotas:
    """The `QuotaBackend` of a single process."""

    MAX_COUNTERS = 100_000

    def __init__(self, *, max_counters: int = MAX_COUNTERS, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._requests: _Lru[deque[float]] = _Lru(max_counters)
        self._tokens: _Lru[_Tokens] = _Lru(max_counters)
        self._budgets: _Lru[_Budget] = _Lru(max_counters)

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
        return self.admit_now(requests, tokens, counters, amount_usd, reservation_id, hold_seconds)

    def admit_now(
        self,
        requests: Sequence[Window],
        tokens: Sequence[Window],
        counters: Sequence[BudgetCounter],
        amount_usd: float,
        reservation_id: str,
        hold_seconds: float,
    ) -> Admission:
        """`admit`, synchronously: nothing else runs between its checks and its counts."""
        if amount_usd <= 0:
            counters = ()  # never refused, and nothing to hold
        if not requests and not tokens and not counters:
            return ADMITTED_WITHOUT_LIMITS
        now = self._clock()
        budgets = self._budgets_of(counters, now)
        if budgets is None:
            absent = tuple(c for c in counters if not self._exists(c.key, now))
            return Admission(False, 0, 0, 0.0, unseeded=absent)
        admission, logs = self._windows(requests, tokens, now)
        if not admission.admitted:
            return admission
        for counter, budget in zip(counters, budgets, strict=True):
            reserved = budget.reserved(now)
            if budget.settled + reserved + amount_usd > counter.cap_usd + EPSILON_USD:
                return Admission(False, 0, 0, 0.0, budget=BudgetRefusal(counter, budget.settled, reserved))
        for log in logs:
            log.append(now)
        if not counters:
            return admission
        until = now + hold_seconds
        for budget in budgets:
            budget.hold(reservation_id, amount_usd, until)
        reservation = Reservation(reservation_id, tuple(counters), amount_usd)
        limit, remaining, reset = admission.limit, admission.remaining, admission.reset_seconds
        return Admission(True, limit, remaining, reset, reservation=reservation)

    def _windows(
        self, requests: Sequence[Window], tokens: Sequence[Window], now: float
    ) -> tuple[Admission, list[deque[float]]]:
        """The windows' verdict, counting nothing yet, and the request windows' logs."""
        if not requests and not tokens:
            return ADMITTED_WITHOUT_LIMITS, []
        logs = []
        cutoff = now - WINDOW_SECONDS
        # The tightest window (the least remaining after this call; the first of equals), and the
        # refusing window that frees up last (the first of equals), tracked as the windows are
        # read: no list of states, no key functions.
        tightest: tuple[Window, int, float] | None = None  # (window, remaining, seconds until empty)
        refused: tuple[Window, float, float] | None = None  # (window, seconds until room, until empty)
        found, refresh = self._requests.get, self._requests.move_to_end  # `touch`, inlined: per call
        for window in requests:
            log = found(window.key)
            if log is None:
                log = self._requests.touch(window.key, deque)
            else:
                refresh(window.key)
            logs.append(log)
            while log and log[0] <= cutoff:
                log.popleft()
            over = len(log) - window.limit  # >= 0: full (more than full if the limit was lowered)
            if over >= 0:
                wait = log[over] + WINDOW_SECONDS - now
                if refused is None or wait > refused[1]:
                    refused = (window, wait, WINDOW_SECONDS)
            remaining = window.limit - len(log) - 1
            if tightest is None or remaining < tightest[1]:
                tightest = (window, remaining, WINDOW_SECONDS)
        found_tokens, refresh = self._tokens.get, self._tokens.move_to_end
        for window in tokens:
            count = found_tokens(window.key)
            if count is None:
                count = self._tokens.touch(window.key, _Tokens)
            else:
                refresh(window.key)
            count.trim(now)
            reset = count.buckets[-1][0] + WINDOW_SECONDS - now if count.buckets else 0.0
            if count.total >= window.limit:
                wait, left = 0.0, count.total
                for second, used in count.buckets:  # room once enough of the oldest have aged out
                    if left < window.limit:
                        break
                    left -= used
                    wait = second + WINDOW_SECONDS - now
                if refused is None or wait > refused[1]:
                    refused = (window, wait, reset)
            remaining = window.limit - count.total
            if tightest is None or remaining < tightest[1]:
                tightest = (window, remaining, reset)
        if refused is not None:
            window, wait, reset = refused
            return Admission(False, window.limit, 0, max(reset, 0.0), max(wait, 0.0), window.key), logs
        assert tightest is not None
        window, remaining, reset = tightest
        return Admission(True, window.limit, remaining, max(reset, 0.0)), logs

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        now = self._clock()
        second = math.floor(now)
        for settlement in settlements:
            if settlement.tokens > 0:
                for key in settlement.token_keys:  # just used by its admission: not moved again
                    count = self._tokens.get(key) or self._tokens.touch(key, _Tokens)
                    count.add(second, settlement.tokens)
            reservation = settlement.reservation
            if reservation is None:
                continue
            for counter in reservation.counters:
                budget = self._budgets.get(counter.key)
                if budget is None or budget.expires_at <= now:
                    continue  # its period is over, or it was forgotten: seeded again from the run log
                budget.release(reservation.id)
                budget.settled += max(settlement.actual_usd, 0.0)

    async def seed(self, spends: Sequence[tuple[BudgetCounter, float]]) -> list[bool]:
        now = self._clock()
        done = []
        for counter, spent_usd in spends:
            if self._exists(counter.key, now):
                done.append(False)
                continue
            self._budgets.pop(counter.key, None)
            self._budgets.touch(counter.key, partial(_Budget, counter.expires_at, max(spent_usd, 0.0)))
            done.append(True)
        return done

    async def spend(self, keys: Sequence[str]) -> Mapping[str, Spend]:
        now = self._clock()
        found: dict[str, Spend] = {}
        for key in keys:
            budget = self._budgets.get(key)
            if budget is None or budget.expires_at <= now:
                found[key] = Spend()
            else:
                found[key] = Spend(budget.settled, budget.reserved(now))
        return found

    async def aclose(self) -> None:
        return None

    def _exists(self, key: str, now: float) -> bool:
        budget = self._budgets.get(key)
        return budget is not None and budget.expires_at > now

    def _budgets_of(self, counters: Sequence[BudgetCounter], now: float) -> list[_Budget] | None:
        """The counters' budgets, just used; None if any does not exist (or its period is over)."""
        found = []
        for counter in counters:
            budget = self._budgets.get(counter.key)
            if budget is None or budget.expires_at <= now:
                return None
            self._budgets.move_to_end(counter.key)
            found.append(budget)
        return found
