"""Which version of a split variant serves a call: sticky per end user, random without one.

A user's point in [0, 1) is a SHA-256 hash of deployment, variant and user, so the same
user keeps the same version for as long as the weights stay the same, on every replica,
with no state to share. Callers without an end user are assigned at random.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from promptdeck.domain.reliability import SplitArm

_SCALE = float(1 << 64)


def point(deployment: str, variant: str, end_user: str | None) -> float:
    """A number in [0, 1): stable for a named user, random otherwise."""
    if not end_user:
        return random.random()
    digest = hashlib.sha256(f"{deployment}\x00{variant}\x00{end_user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def choose(arms: Sequence[SplitArm], at: float) -> int:
    """The version number whose share of the total weight contains `at`."""
    total = sum(arm.weight for arm in arms)
    target = at * total
    running = 0.0
    for arm in arms:
        running += arm.weight
        if target < running:
            return arm.version
    return next(arm.version for arm in reversed(arms) if arm.weight > 0)  # `at` at the very top
