"""What every rate-limit and budget counting backend does (docs/governance.md).

The governor (engine/quota_governor.py) decides *which* counters a call touches; a backend
only counts, atomically. Two backends implement this Protocol: quota_memory (one process,
correct for one replica) and quota_redis (Lua scripts, shared by every replica). A call costs
two steps, each ONE atomic round trip to the backend's store, so N replicas enforce one limit,
not N: `admit` before the call, `settle` after it (batched: many calls' settlements at once).

Counting semantics, the same in every backend:

* `admit` checks every request window, every token window and every budget counter of a call
  and counts it in all of them, or in none: a call refused by anything uses up nothing.
* Requests per minute: an exact sliding-window log. A call is admitted only if, in EVERY
  request window that applies, fewer than `limit` calls were admitted in the last 60 s. So a
  limit of N lets through at most N in any 60 s, however many replicas and concurrent calls.
* Tokens per minute: counted from real usage after the call (`settle`). A call is admitted
  while the tokens counted in the last 60 s are under the limit (its own are not known yet).
  Backends may bucket token counts by whole seconds.
* Budgets: `admit` holds `amount_usd` (the call's worst case) on every budget counter, only if
  none would exceed its cap (settled + held + amount <= cap); with no amount nothing is held.
  A counter that does not exist yet is not guessed at: the step counts nothing and reports it
  `unseeded`; the governor reads its spend so far from the run log, `seed`s it (set only if
  still absent: another replica may have done it) and asks again. Counters expire at their
  period end. `settle` releases a reservation and adds the actual cost, whatever the ending; a
  hold not settled within its `hold_seconds` (its replica died) is released.

Time is the backend's own clock (Redis: the server's), so replicas agree on windows.

The values made once per call (`Admission`, `Reservation`, `Settlement`, and the governor's
`Hold`) are `@immutable` (domain/values.py): frozen to mypy, cheap to build.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from promptdeck.domain.values import immutable

WINDOW_SECONDS = 60.0
HOLD_SECONDS = 3600.0  # a reservation its replica never settled (it died) is released after this


class QuotaStoreUnavailable(Exception):
    """The backend's store cannot be reached; the governor applies the configured fail policy."""


@dataclass(frozen=True, slots=True)
class Window:
    """One sliding 60 s window: a counter key (unique per workspace, subject and unit) and its limit."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class BudgetCounter:
    """One budget's spend in one period: its key (includes the period start), cap, and the unix
    time the period ends (when the counter expires)."""

    key: str
    cap_usd: float
    expires_at: float


@immutable
class Reservation:
    """Money held on counters until settled; `id` is unique per reservation."""

    id: str
    counters: tuple[BudgetCounter, ...]
    amount_usd: float


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """A budget refused the call: this counter would exceed its cap."""

    counter: BudgetCounter
    settled_usd: float
    reserved_usd: float

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.counter.cap_usd - self.settled_usd - self.reserved_usd)


@immutable
class Admission:
    """The outcome of `admit`: admitted, or refused by a rate window, or by a budget, or not
    decided because budget counters do not exist yet (`unseeded`). Nothing is counted unless
    `admitted`.

    The rate figures are the tightest window's (fewest remaining): `remaining` counts after this
    call when admitted, `reset_seconds` is until that window is empty again, `retry_after` until
    it has room again when a window refused (else 0). With no windows: limit 0 (the caller
    sends no X-RateLimit-* headers).
    """

    admitted: bool
    limit: int
    remaining: int
    reset_seconds: float
    retry_after: float = 0.0
    refused_by: str | None = None  # the key of the window that refused the call
    reservation: Reservation | None = None  # admitted with a budget: the money held
    budget: BudgetRefusal | None = None  # refused by a budget
    unseeded: tuple[BudgetCounter, ...] = ()  # these counters must be seeded first

    @property
    def decided(self) -> bool:
        return not self.unseeded


ADMITTED_WITHOUT_LIMITS = Admission(admitted=True, limit=0, remaining=0, reset_seconds=0.0)


@immutable
class Settlement:
    """What a finished call adds: its real tokens to its token windows, and its real cost in
    place of its reservation."""

    token_keys: tuple[str, ...]
    tokens: int
    reservation: Reservation | None
    actual_usd: float


@dataclass(frozen=True, slots=True)
class Spend:
    """A counter's spend in its period: settled (real costs) and reserved (calls in flight)."""

    settled_usd: float = 0.0
    reserved_usd: float = 0.0


class UniqueIds:
    """Ids unique across replicas and restarts, for reservations and window entries: a random
    prefix per process and a count (a uuid4 per call costs more)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6) + ":"
        self._count = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._count)}"


@runtime_checkable
class QuotaBackend(Protocol):
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
        """Check every window and counter; only if all have room, count one request in each
        request window and hold `amount_usd` (when > 0) on each counter as `reservation_id`."""
        ...

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        """Count each settlement's tokens and settle its reservation, all in one step."""
        ...

    async def seed(self, spends: Sequence[tuple[BudgetCounter, float]]) -> list[bool]:
        """Set each counter's settled spend where the counter does not exist; True where set."""
        ...

    async def spend(self, keys: Sequence[str]) -> Mapping[str, Spend]:
        """Settled and reserved spend of these counters (absent counters: zero)."""
        ...

    async def aclose(self) -> None: ...
