"""A model's price: USD per million tokens, flat or tiered by prompt size, and the cost of a
run's usage at it. Pure arithmetic; where prices come from (genai-prices, a workspace's
overrides) is engine/pricing.py and store/prices.py."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from promptdeck.domain.events import Usage

MILLION = Decimal(1_000_000)

Rate = tuple[Decimal, tuple[tuple[int, Decimal], ...]]  # base per MTok, (input tokens above, per MTok)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Cached and cache-write rates default to the input rate."""

    input: Rate
    output: Rate
    cached_input: Rate | None = None
    cache_write: Rate | None = None

    @classmethod
    def flat(
        cls, input: float, output: float, cached_input: float | None = None, cache_write: float | None = None
    ) -> Price:
        def rate(value: float | None) -> Rate | None:
            return None if value is None else (Decimal(str(value)), ())

        return cls(rate(input), rate(output), rate(cached_input), rate(cache_write))  # type: ignore[arg-type]

    def cost(self, usage: Usage) -> float:
        size = usage.input
        fresh = max(usage.input - usage.cached_input - usage.cache_write_input, 0)
        total = (
            fresh * _at(self.input, size)
            + usage.cached_input * _at(self.cached_input or self.input, size)
            + usage.cache_write_input * _at(self.cache_write or self.input, size)
            + usage.output * _at(self.output, size)
        )
        return float(total / MILLION)


def _at(rate: Rate, input_tokens: int) -> Decimal:
    """The per-MTok price for a request of this size (long prompts cost more on some models)."""
    price, tiers = rate
    for start, tier_price in tiers:
        if input_tokens > start:
            price = tier_price
    return price
