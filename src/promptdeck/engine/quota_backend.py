"""What every rate-limit and budget counting backend does (docs/governance.md).

The governor (engine/quota_governor.py) decides *which* counters a call touches; a backend
only counts, atomically. Two backends implement this Protocol: quota_memory (one process,
correct for one replica) and quota_redis (Lua scripts, shared by every replica). Each method
is ONE atomic round trip to the backend's store, so N replicas enforce one limit, not N.

Counting semantics, the same in every backend:

* Requests per minute: an exact sliding-window log. A call is admitted only if, in EVERY
  request window that applies, fewer than `limit` calls were admitted in the last 60 s; it is
  then counted in all of them at once (all or nothing). So a limit of N lets through at most N
  in any 60 s, however many replicas and concurrent calls.
* Tokens per minute: counted from real usage after the call (`count_tokens`). A call is admitted
  while the tokens counted in the last 60 s are under the limit (the call's own tokens are not
  known yet). Backends may bucket token counts by whole seconds.
* Budgets: `reserve` adds a worst-case amount to every budget counter of a call, atomically,
  only if none would exceed its cap (settled + reserved + amount <= cap); a zero amount is never
  refused. `settle` releases the reservation and adds the actual cost, whatever the ending.
  `seed` sets a counter's spend so far in its period when the counter does not exist yet, so a
  restart or a new replica does not forget what was spent. Counters expire at their period end.
  A reservation not settled within its `hold_seconds` (its replica died) is released.

Time is the backend's own clock (Redis: the server's), so replicas agree on windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

WINDOW_SECONDS = 60.0


class QuotaStoreUnavailable(Exception):
    """The backend's store cannot be reached; the governor applies the configured fail policy."""


@dataclass(frozen=True, slots=True)
class Window:
    """One sliding 60 s window: a counter key (unique per workspace, subject and unit) and its limit."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of `admit`, reported for the tightest window (fewest remaining).

    `remaining` counts after this call when admitted. `reset_seconds`: seconds until that window
    is empty again. `retry_after`: seconds until it has room again, when refused (else 0).
    With no windows at all: admitted, limit 0 (the caller sends no X-RateLimit-* headers).
    """

    admitted: bool
    limit: int
    remaining: int
    reset_seconds: float
    retry_after: float = 0.0
    refused_by: str | None = None  # the key of the window that refused the call


ADMITTED_WITHOUT_LIMITS = Admission(admitted=True, limit=0, remaining=0, reset_seconds=0.0)


@dataclass(frozen=True, slots=True)
class BudgetCounter:
    """One budget's spend in one period: its key (includes the period start), cap, and the unix
    time the period ends (when the counter expires)."""

    key: str
    cap_usd: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money held on counters until `settle`; `id` is unique per reservation."""

    id: str
    counters: tuple[BudgetCounter, ...]
    amount_usd: float


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """`reserve` refused: this counter would exceed its cap."""

    counter: BudgetCounter
    settled_usd: float
    reserved_usd: float

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.counter.cap_usd - self.settled_usd - self.reserved_usd)


@dataclass(frozen=True, slots=True)
class Spend:
    """A counter's spend in its period: settled (real costs) and reserved (calls in flight)."""

    settled_usd: float = 0.0
    reserved_usd: float = 0.0


@runtime_checkable
class QuotaBackend(Protocol):
    async def admit(self, requests: Sequence[Window], tokens: Sequence[Window]) -> Admission:
        """Check every window; only if all have room, count one request in each request window."""
        ...

    async def count_tokens(self, keys: Sequence[str], tokens: int) -> None:
        """Add a finished call's real token usage to these token windows (now)."""
        ...

    async def reserve(
        self, counters: Sequence[BudgetCounter], amount_usd: float, *, hold_seconds: float
    ) -> Reservation | BudgetRefusal:
        """Hold `amount_usd` on every counter, or on none if any would exceed its cap."""
        ...

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the reservation and add the actual cost to each of its counters."""
        ...

    async def seed(self, counter: BudgetCounter, spent_usd: float) -> bool:
        """Set the counter's settled spend when it does not exist; True if it was set."""
        ...

    async def spend(self, keys: Sequence[str]) -> Mapping[str, Spend]:
        """Settled and reserved spend of these counters (absent counters: zero)."""
        ...

    async def aclose(self) -> None: ...
