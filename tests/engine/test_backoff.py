"""The engine's backoff between attempts (`Invocation._backoff`, architecture.md#reliability):
exponential in the attempt number, capped by the variant's `max_backoff_seconds`, with jitter
so replicas do not retry in step; `Retry-After` is honoured as it is."""

from __future__ import annotations

from typing import Any

import pytest

from promptdeck.domain.events import Failed
from promptdeck.domain.reliability import VariantConfig
from promptdeck.engine.invoke import Invocation

RETRYABLE = Failed("upstream_error", "openai upstream answered HTTP 503", retryable=True)


def invocation(config: VariantConfig) -> Invocation:
    """An invocation with only its config: `_backoff` reads nothing else."""
    nothing: Any = None
    return Invocation(nothing, [], config, nothing, {}, 0.0)


@pytest.mark.parametrize(
    ("attempt", "exponential"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0)]
)
def test_backoff_jitter_varies_within_half_to_all_of_the_exponential_delay(
    attempt: int, exponential: float
) -> None:
    """Delays are `min(max_backoff, backoff * 2^(attempt-1))` times a random factor in
    [0.5, 1.0]: they differ from call to call and never leave that band."""
    config = VariantConfig(backoff_seconds=0.5, max_backoff_seconds=8.0)
    delays = [invocation(config)._backoff(attempt, RETRYABLE) for _ in range(500)]
    assert all(d is not None and 0.5 * exponential <= d <= exponential for d in delays)
    assert len(set(delays)) > 400, "jitter: the delays vary"
    spread = max(d for d in delays if d is not None) - min(d for d in delays if d is not None)
    assert spread > 0.3 * exponential, "the jitter uses most of the band"


def test_no_backoff_for_a_failure_that_is_not_retryable_and_retry_after_without_jitter() -> None:
    config = VariantConfig(backoff_seconds=0.5, max_backoff_seconds=8.0)
    run = invocation(config)
    assert run._backoff(1, Failed("upstream_rejected", "HTTP 400")) is None
    assert run._backoff(1, Failed("upstream_rate_limited", "429", True, retry_after=3)) == 3.0
    assert run._backoff(1, Failed("upstream_rate_limited", "429", True, retry_after=9)) is None
