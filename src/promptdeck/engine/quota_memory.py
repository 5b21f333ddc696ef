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
MAX_PREPARED = 10_000  # combinations of windows and counters kept prepared (then forgotten at once)
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
    """A mapping of at most `bound` entries; `touch` marks one as just used. Each entry it
    forgets moves `epoch` on: prepared references (`_Slots`) to it are then stale."""

    def __init__(self, bound: int, epoch: _Epoch) -> None:
        super().__init__()
        self.bound = max(1, bound)
        self.epoch = epoch

    def touch(self, key: str, make: Callable[[], T]) -> T:
        value = self.get(key)
        if value is None:
            value = self[key] = make()
            if len(self) > self.bound:
                self.popitem(last=False)
                self.epoch.value += 1
        else:
            self.move_to_end(key)
        return value

    def clear(self) -> None:
        super().clear()
        self.epoch.value += 1


@dataclass(slots=True)
class _Epoch:
    """Moved on whenever a window or counter is forgotten or replaced."""

    value: int = 0


@dataclass(slots=True)
class _Slots:
    """One combination of windows and counters with their state found once, not by key per call:
    the governor passes its plan's same tuples call after call, so they are found by identity
    (`sequences` keeps them alive, so no other tuple takes their ids while the entry lives). Valid
    while `epoch` is the backend's and before `expires_at` (the first counter's period end). Each
    window is marked used in its store's order at most once a second (`refreshed_at`): forgetting
    a window used since would take more new ones than the bound within that second."""

    sequences: tuple[Sequence[Window], Sequence[Window], Sequence[BudgetCounter]]
    logs: tuple[tuple[Window, deque[float]], ...]
    counts: tuple[tuple[Window, _Tokens], ...]
    budgets: tuple[_Budget, ...]
    epoch: int
    expires_at: float
    refreshed_at: float


class MemoryQuotas:
    """The `QuotaBackend` of a single process."""

    MAX_COUNTERS = 100_000

    def __init__(self, *, max_counters: int = MAX_COUNTERS, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._epoch = _Epoch()
        self._requests: _Lru[deque[float]] = _Lru(max_counters, self._epoch)
        self._tokens: _Lru[_Tokens] = _Lru(max_counters, self._epoch)
        self._budgets: _Lru[_Budget] = _Lru(max_counters, self._epoch)
        self._slots: dict[tuple[int, int, int], _Slots] = {}  # by the sequences' identity

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
        slots = self._slots.get((id(requests), id(tokens), id(counters)))
        if slots is None or slots.epoch != self._epoch.value or now >= slots.expires_at:
            slots = self._prepare(requests, tokens, counters, now)
            if slots is None:
                absent = tuple(c for c in counters if not self._exists(c.key, now))
                return Admission(False, 0, 0, 0.0, unseeded=absent)
        elif now >= slots.refreshed_at + 1.0:
            self._refresh(slots, now)
        verdict = self._windows(slots, now)
        if isinstance(verdict, Admission):  # a window refused
            return verdict
        budgets = slots.budgets
        for counter, budget in zip(counters, budgets, strict=True):
            reserved = budget.reserved(now)
            if budget.settled + reserved + amount_usd > counter.cap_usd + EPSILON_USD:
                return Admission(False, 0, 0, 0.0, budget=BudgetRefusal(counter, budget.settled, reserved))
        for _, log in slots.logs:
            log.append(now)
        limit, remaining, reset = verdict
        if not counters:
            return Admission(True, limit, remaining, reset)
        until = now + hold_seconds
        for budget in budgets:
            budget.hold(reservation_id, amount_usd, until)
        reservation = Reservation(reservation_id, tuple(counters), amount_usd)
        return Admission(True, limit, remaining, reset, reservation=reservation)

    def _prepare(
        self,
        requests: Sequence[Window],
        tokens: Sequence[Window],
        counters: Sequence[BudgetCounter],
        now: float,
    ) -> _Slots | None:
        """The windows' and counters' state, each just used (made if new); None if a counter
        does not exist (or its period is over). Kept for the next call only for tuples: a list
        may be changed in place under the same identity."""
        budgets = []
        for counter in counters:
            budget = self._budgets.get(counter.key)
            if budget is None or budget.expires_at <= now:
                return None
            self._budgets.move_to_end(counter.key)
            budgets.append(budget)
        logs = tuple((w, self._requests.touch(w.key, deque)) for w in requests)
        counts = tuple((w, self._tokens.touch(w.key, _Tokens)) for w in tokens)
        expires_at = min((b.expires_at for b in budgets), default=math.inf)
        slots = _Slots((requests, tokens, counters), logs, counts, tuple(budgets), 0, expires_at, now)
        slots.epoch = self._epoch.value  # after the touches above, which may have forgotten others
        if isinstance(requests, tuple) and isinstance(tokens, tuple) and isinstance(counters, tuple):
            if len(self._slots) >= MAX_PREPARED:
                self._slots.clear()
            self._slots[(id(requests), id(tokens), id(counters))] = slots
        return slots

    def _refresh(self, slots: _Slots, now: float) -> None:
        """Mark the slots' windows and counters as just used in their stores' order."""
        for window, _ in slots.logs:
            self._requests.move_to_end(window.key)
        for window, _ in slots.counts:
            self._tokens.move_to_end(window.key)
        for counter in slots.sequences[2]:
            self._budgets.move_to_end(counter.key)
        slots.refreshed_at = now

    def _windows(self, slots: _Slots, now: float) -> Admission | tuple[int, int, float]:
        """The windows' verdict, counting nothing yet: the refusal, or the tightest window's
        (limit, remaining after this call, seconds until empty); with no windows, (0, 0, 0.0)."""
        cutoff = now - WINDOW_SECONDS
        # The tightest window (the least remaining after this call; the first of equals), tracked
        # as the windows are read, in locals: this runs on every call.
        limit, remaining, reset = 0, 0, 0.0
        tightest = False
        refused: tuple[Window, float, float] | None = None  # (window, seconds until room, until empty)
        for window, log in slots.logs:
            if log and log[0] <= cutoff:
                while log and log[0] <= cutoff:
                    log.popleft()
            left = window.limit - len(log) - 1  # < 0: full (more than full if the limit was lowered)
            if left < 0:
                wait = log[-left - 1] + WINDOW_SECONDS - now  # room once this one has aged out
                if refused is None or wait > refused[1]:
                    refused = (window, wait, WINDOW_SECONDS)
            if not tightest or left < remaining:
                tightest, limit, remaining, reset = True, window.limit, left, WINDOW_SECONDS
        for window, count in slots.counts:
            buckets = count.buckets
            if buckets and buckets[0][0] <= cutoff:
                count.trim(now)
            until_empty = buckets[-1][0] + WINDOW_SECONDS - now if buckets else 0.0
            left = window.limit - count.total
            if left <= 0:
                wait, over = 0.0, count.total
                for second, used in buckets:  # room once enough of the oldest have aged out
                    if over < window.limit:
                        break
                    over -= used
                    wait = second + WINDOW_SECONDS - now
                if refused is None or wait > refused[1]:
                    refused = (window, wait, until_empty)
            if not tightest or left < remaining:
                tightest, limit, remaining, reset = True, window.limit, left, until_empty
        if refused is not None:
            window, wait, until_empty = refused
            return Admission(False, window.limit, 0, max(until_empty, 0.0), max(wait, 0.0), window.key)
        return limit, remaining, max(reset, 0.0)

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        self.settle_now(settlements)

    def settle_now(self, settlements: Sequence[Settlement]) -> None:
        """`settle`, synchronously."""
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
            if self._budgets.pop(counter.key, None) is not None:
                self._epoch.value += 1  # an expired counter replaced: slots holding it are stale
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
