"""Failed console sign-ins, counted per (email, client address) in this process: after a few
in a row that address pauses for that email, never the member (store/console_members.py asks it
before a password is looked at)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from promptdeck.domain.members import LOCKOUT, MAX_FAILED_SIGN_INS

WRONG_CREDENTIALS = "That email and password do not match a member."
FIRST_PAUSE = 60.0  # seconds an address waits once it has used its free failures; doubles after
LONGEST_PAUSE = LOCKOUT.total_seconds()
FAILURES_KEPT = 3600.0  # seconds after its last failure that an (email, address) count is forgotten
MOST_COUNTED = 100_000  # (email, address) counts kept; the stalest go first


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0  # the clock's time of the latest


class SignInThrottle:
    """Failed sign-ins counted per (email, client address), in this process. After
    MAX_FAILED_SIGN_INS failures in a row that address pauses FIRST_PAUSE seconds for that
    email, twice as long after each further failure, up to LOCKOUT. The pause is the
    address's, never the member's: someone who only knows an email slows down themselves, not
    the member, who still signs in from their own address. Unknown emails count exactly as
    members' do. An attempt counts as it starts (a success takes it back), so parallel guesses
    cannot slip past the count. Nothing counts per address alone: behind a proxy that hides
    client addresses (FORWARDED_ALLOW_IPS unset) that would pause everyone's sign-in. With
    several replicas each counts its own share: its limits are then a floor."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, most: int = MOST_COUNTED) -> None:
        self.clock = clock
        self.most = most
        self._failures: dict[tuple[str, str], _Failures] = {}

    def _current(self, key: tuple[str, str], now: float) -> _Failures:
        found = self._failures.get(key)
        return found if found is not None and now - found.last <= FAILURES_KEPT else _Failures()

    def wait(self, email: str, address: str) -> float:
        """Seconds until `address` may try `email` again; 0 or less when it may now."""
        found = self._current((email, address), now := self.clock())
        over = found.count - MAX_FAILED_SIGN_INS
        if over < 0:
            return 0.0
        return found.last + min(FIRST_PAUSE * 2.0 ** min(over, 30), LONGEST_PAUSE) - now

    def attempt(self, email: str, address: str) -> int:
        """Count an attempt as failed until `succeeded`; returns the failures left before a pause."""
        key, now = (email, address), self.clock()
        count = self._current(key, now).count + 1
        self._failures.pop(key, None)  # re-added last: the dict stays in order of staleness
        self._failures[key] = _Failures(count, now)
        while len(self._failures) > self.most:
            del self._failures[next(iter(self._failures))]
        return max(0, MAX_FAILED_SIGN_INS - count)

    def succeeded(self, email: str, address: str) -> None:
        self._failures.pop((email, address), None)


def paused_message(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        f"Too many failed sign-ins with this email from your address; try again in {minutes} "
        f"minute{'s' if minutes > 1 else ''}."
    )


def failed_message(left: int, pause: float) -> str:
    """The same for an unknown email as for a wrong password: the counts are the address's."""
    if not left:
        return f"{WRONG_CREDENTIALS} {paused_message(pause)}"
    return (
        f"{WRONG_CREDENTIALS} After {left} more failed attempt{'s' if left > 1 else ''}, "
        f"signing in with this email from your address pauses for {int(FIRST_PAUSE // 60)} minute."
    )
