"""A model's price: USD per million tokens, flat or tiered by prompt size, and the cost of a
run's usage at it. Pure arithmetic; where prices come from (genai-prices, a workspace's
overrides) is engine/pricing.py and store/prices.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WrapValidator

from promptdeck.domain.events import Usage
from promptdeck.domain.reliability import ModelName, expected

__all__ = ["ModelName", "Price", "PriceOverride"]

MILLION = 1_000_000

# Base USD per MTok, then (input tokens above, USD per MTok) tiers. Floats: a run's cost is kept
# as a float, and summing in Decimal first changed at most its last digit, for ~4x the CPU.
Rate = tuple[float, tuple[tuple[int, float], ...]]


RATE_EXPECTED: WrapValidator = expected("a number of USD per million tokens, 0 or more")
# Finite and not a bool or a string: FastAPI's JSON reader takes `NaN` and `Infinity`, which the
# price table cannot hold (NaN is stored as NULL; Infinity is an endless cost).
PerMTok = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True), RATE_EXPECTED]


class PriceOverride(BaseModel):
    """A workspace's price for a model (USD per million tokens), checked once as it is read.
    The cached-input and cache-write rates default to the input rate."""

    model_config = ConfigDict(frozen=True)

    input_per_mtok: PerMTok
    output_per_mtok: PerMTok
    cached_input_per_mtok: PerMTok | None = None
    cache_write_per_mtok: PerMTok | None = None

    def price(self) -> Price:
        return Price.flat(
            self.input_per_mtok, self.output_per_mtok, self.cached_input_per_mtok, self.cache_write_per_mtok
        )


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
            return None if value is None else (float(value), ())

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
        return total / MILLION

    def estimate(self, input_tokens: int, output_tokens: int) -> float:
        """`cost` of that many fresh input and output tokens, without building a `Usage`: a
        budget's worst-case hold (engine/quota_cost.py)."""
        at = input_tokens
        return (input_tokens * _at(self.input, at) + output_tokens * _at(self.output, at)) / MILLION


def _at(rate: Rate, input_tokens: int) -> float:
    """The per-MTok price for a request of this size (long prompts cost more on some models)."""
    price, tiers = rate
    for start, tier_price in tiers:
        if input_tokens > start:
            price = tier_price
    return price
