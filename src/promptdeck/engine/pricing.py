"""The cost of a run in USD, from its usage, with `genai-prices` as the price list.

Each model's rates are looked up once and kept; the arithmetic per run is then a
few multiplications (genai-prices' own per-call path costs ~80 µs, too much for
every run). A workspace may override the price of any model (custom or
self-hosted ones); the embedded local model is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from promptdeck.domain.events import Usage

# promptdeck provider name -> genai-prices provider id
PRICE_PROVIDERS = {
    "openai": "openai",
    "openai-responses": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
}
FREE_PROVIDERS = ("local",)
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


def _rate(value: Any) -> Rate | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value, ()
    return value.base, tuple((tier.start, tier.price) for tier in value.tiers)


class PriceList:
    """Known prices by model id (`provider/model`), looked up in genai-prices once each."""

    def __init__(self) -> None:
        self._known: dict[str, Price | None] = {}

    def price(self, model_id: str) -> Price | None:
        if model_id not in self._known:
            self._known[model_id] = self._look_up(model_id)
        return self._known[model_id]

    @staticmethod
    def _look_up(model_id: str) -> Price | None:
        provider, _, model = model_id.partition("/")
        provider_id = PRICE_PROVIDERS.get(provider)
        if provider_id is None:
            return None
        try:
            found = calc_price(
                PriceUsage(input_tokens=1), model_ref=model, provider_id=provider_id
            ).model_price
        except LookupError:
            return None
        rates = found.__dict__
        input_rate, output_rate = _rate(rates.get("input_mtok")), _rate(rates.get("output_mtok"))
        if input_rate is None or output_rate is None:
            return None
        return Price(
            input_rate, output_rate, _rate(rates.get("cache_read_mtok")), _rate(rates.get("cache_write_mtok"))
        )

    def cost(self, model_id: str, usage: Usage, override: Price | None = None) -> tuple[float | None, bool]:
        """(cost in USD, whether the price was known). Unknown prices give (None, False)."""
        if override is not None:
            return override.cost(usage), True
        if model_id.partition("/")[0] in FREE_PROVIDERS:
            return 0.0, True
        price = self.price(model_id)
        return (price.cost(usage), True) if price is not None else (None, False)
