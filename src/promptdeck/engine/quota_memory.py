"""Rate-limit and budget counters in this process: correct for one replica (docs/governance.md).

Every method runs without awaiting between its check and its count, so on the event loop each
is atomic, as a Lua script is in Redis (engine/quota_redis.py). Memory stays bounded whatever
callers send: a request window holds at most its limit's timestamps, a token window at most 60
one-second buckets, and there are at most `max_counters` windows and budget counters, the least
recently used forgotten first (a window idle for a minute loses nothing; a forgotten budget
counter is seeded again from the run log the next time it is used).
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from promptdeck.engine.quota_backend import (
    ADMITTED_WITHOUT_LIMITS,
    WINDOW_SECONDS,
    Admission,
    BudgetCounter,
    BudgetRefusal,
    Reservation,
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


@dataclass(slots=True)
class _Budget:
    expires_at: float
    settled: float = 0.0
    held: dict[str, tuple[float, float]] = field(default_factory=dict)  # id: (amount, release at)

    def reserved(self, now: float) -> float:
        for stale in [rid for rid, (_, until) in self.held.items() if until <= now]:
            del self.held[stale]  # its replica never settled it
        return sum(amount for amount, _ in self.held.values())


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

    async def admit(self, requests: Sequence[Window], tokens: Sequence[Window]) -> Admission:
        if not requests and not tokens:
            return ADMITTED_WITHOUT_LIMITS
        now = self._clock()
        logs = [self._requests.touch(w.key, deque) for w in requests]
        for log in logs:
            while log and log[0] <= now - WINDOW_SECONDS:
                log.popleft()
        counts = [self._tokens.touch(w.key, _Tokens) for w in tokens]
        for count in counts:
            count.trim(now)
        # (remaining after this call, refused, seconds until room, seconds until empty, window)
        states: list[tuple[int, bool, float, float, Window]] = []
        for window, log in zip(requests, logs, strict=True):
            over = len(log) - window.limit  # >= 0: full (more than full if the limit was lowered)
            wait = log[over] + WINDOW_SECONDS - now if over >= 0 else 0.0
            states.append((window.limit - len(log) - 1, over >= 0, wait, WINDOW_SECONDS, window))
        for window, count in zip(tokens, counts, strict=True):
            wait, left = 0.0, count.total
            for second, used in count.buckets:  # room once enough of the oldest have aged out
                if left < window.limit:
                    break
                left -= used
                wait = second + WINDOW_SECONDS - now
            reset = count.buckets[-1][0] + WINDOW_SECONDS - now if count.buckets else 0.0
            states.append((window.limit - count.total, count.total >= window.limit, wait, reset, window))
        refused = [s for s in states if s[1]]
        if refused:
            _, _, wait, reset, window = max(refused, key=lambda s: s[2])
            return Admission(False, window.limit, 0, max(reset, 0.0), max(wait, 0.0), window.key)
        for log in logs:
            log.append(now)
        remaining, _, _, reset, window = min(states, key=lambda s: s[0])
        return Admission(True, window.limit, remaining, max(reset, 0.0))

    async def count_tokens(self, keys: Sequence[str], tokens: int) -> None:
        if tokens <= 0:
            return
        second = math.floor(self._clock())
        for key in keys:
            count = self._tokens.touch(key, _Tokens)
            if count.buckets and count.buckets[-1][0] == second:
                count.buckets[-1][1] += tokens
            else:
                count.buckets.append([second, tokens])
            count.total += tokens

    async def reserve(
        self, counters: Sequence[BudgetCounter], amount_usd: float, *, hold_seconds: float
    ) -> Reservation | BudgetRefusal:
        reservation = Reservation(uuid.uuid4().hex, tuple(counters), max(amount_usd, 0.0))
        if reservation.amount_usd == 0:  # never refused, and nothing to hold
            return reservation
        now = self._clock()
        budgets = [self._budget(c, now) for c in counters]
        for counter, budget in zip(counters, budgets, strict=True):
            reserved = budget.reserved(now)
            if budget.settled + reserved + reservation.amount_usd > counter.cap_usd + EPSILON_USD:
                return BudgetRefusal(counter, budget.settled, reserved)
        for budget in budgets:
            budget.held[reservation.id] = (reservation.amount_usd, now + hold_seconds)
        return reservation

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        now = self._clock()
        for counter in reservation.counters:
            if counter.expires_at <= now:
                continue  # its period is over: nothing left to count it in
            budget = self._budget(counter, now)
            budget.held.pop(reservation.id, None)
            budget.settled += max(actual_usd, 0.0)

    async def seed(self, counter: BudgetCounter, spent_usd: float) -> bool:
        now = self._clock()
        current = self._budgets.get(counter.key)
        if current is not None and current.expires_at > now:
            return False
        self._budgets.pop(counter.key, None)
        self._budgets.touch(counter.key, lambda: _Budget(counter.expires_at, max(spent_usd, 0.0)))
        return True

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

    def _budget(self, counter: BudgetCounter, now: float) -> _Budget:
        budget = self._budgets.touch(counter.key, lambda: _Budget(counter.expires_at))
        if budget.expires_at <= now:  # a period over: a fresh counter (keys name their period)
            budget = self._budgets[counter.key] = _Budget(counter.expires_at)
        return budget
