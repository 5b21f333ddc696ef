"""The engine's backoff between attempts (`backoff_delay`, architecture.md#reliability):
exponential in the attempt number, capped by the variant's `max_backoff_seconds`, with jitter
so replicas do not retry in step; `Retry-After` is honoured as it is."""

from __future__ import annotations

import pytest

from promptdeck.domain.events import Failed
from promptdeck.domain.reliability import Retries, VariantConfig
from promptdeck.engine.invocation import backoff_delay

RETRYABLE = Failed("upstream_error", "openai upstream answered HTTP 503", retryable=True)


@pytest.mark.parametrize(
    ("attempt", "exponential"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0)]
)
def test_backoff_jitter_varies_within_half_to_all_of_the_exponential_delay(
    attempt: int, exponential: float
) -> None:
    """Delays are `min(max_backoff, backoff * 2^(attempt-1))` times a random factor in
    [0.5, 1.0]: they differ from call to call and never leave that band."""
    config = VariantConfig(retries=Retries(backoff_seconds=0.5, max_backoff_seconds=8.0))
    delays = [backoff_delay(config, attempt, RETRYABLE) for _ in range(500)]
    assert all(d is not None and 0.5 * exponential <= d <= exponential for d in delays)
    assert len(set(delays)) > 400, "jitter: the delays vary"
    spread = max(d for d in delays if d is not None) - min(d for d in delays if d is not None)
    assert spread > 0.3 * exponential, "the jitter uses most of the band"


def test_no_backoff_for_a_failure_that_is_not_retryable_and_retry_after_without_jitter() -> None:
    config = VariantConfig(retries=Retries(backoff_seconds=0.5, max_backoff_seconds=8.0))
    assert backoff_delay(config, 1, Failed("upstream_rejected", "HTTP 400")) is None
    assert backoff_delay(config, 1, Failed("upstream_rate_limited", "429", True, retry_after=3)) == 3.0
    assert backoff_delay(config, 1, Failed("upstream_rate_limited", "429", True, retry_after=9)) is None
