"""A circuit breaker per upstream: after repeated failures, stop calling it for a while.

Closed: calls go through. After `threshold` consecutive failures it opens and
calls fail at once (so a fallback runs without waiting on a dead upstream).
After `cooldown` seconds one trial call is let through (half-open): success
closes it, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False
    last_error: str = ""


class CircuitBreakers:
    def __init__(
        self, threshold: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._states: dict[str, _State] = {}

    def allows(self, upstream: str) -> bool:
        state = self._states.get(upstream)
        if state is None or state.opened_at is None:
            return True
        if self._clock() - state.opened_at < self.cooldown or state.trial_running:
            return False
        state.trial_running = True  # half-open: this one call decides
        return True

    def succeeded(self, upstream: str) -> None:
        self._states.pop(upstream, None)

    def failed(self, upstream: str, error: str) -> None:
        state = self._states.setdefault(upstream, _State())
        state.failures += 1
        state.last_error = error
        state.trial_running = False
        if state.failures >= self.threshold or state.opened_at is not None:
            state.opened_at = self._clock()

    def released(self, upstream: str) -> None:
        """A call ended without a verdict on the upstream (its request was refused, or the caller
        went away): if it was the half-open trial, another call may be the trial now."""
        state = self._states.get(upstream)
        if state is not None:
            state.trial_running = False

    def states(self) -> dict[str, str]:
        """Each upstream with failures on record: `closed` (under the threshold), `open`, or
        `half_open` (cooled down: the next call is a trial). Others are closed (for /metrics)."""
        now = self._clock()
        found = {}
        for upstream, state in self._states.items():
            if state.opened_at is None:
                found[upstream] = "closed"
            elif state.trial_running or now - state.opened_at >= self.cooldown:
                found[upstream] = "half_open"
            else:
                found[upstream] = "open"
        return found

    def why_open(self, upstream: str) -> str:
        """The failure that opened (or kept open) the circuit, in the upstream's words."""
        state = self._states.get(upstream)
        return state.last_error if state is not None else ""
