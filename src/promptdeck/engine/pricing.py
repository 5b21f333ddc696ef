"""The cost of a run in USD, from its usage, with `genai-prices` as the price list.

Each model's rates are looked up once and kept; the arithmetic per run is then a
few multiplications (genai-prices' own per-call path costs ~80 µs, too much for
every run). A workspace may override the price of any model (custom or
self-hosted ones). Each provider says whether it is free (the embedded model) and
the name genai-prices knows it by (`Provider.free`, `Provider.pricing_name`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from promptdeck.domain.events import Usage
from promptdeck.domain.prices import Price, Rate
from promptdeck.providers.base import Providers

__all__ = ["FREE", "Price", "PriceList", "Rate"]

FREE = Price.flat(0.0, 0.0)  # a free provider's (the embedded model's)


def _rate(value: Any) -> Rate | None:
    """genai-prices' rate (a Decimal, or tiered) as ours."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value), ()
    return float(value.base), tuple((tier.start, float(tier.price)) for tier in value.tiers)


class PriceList:
    """Known prices by model id (`provider/model`), looked up in genai-prices once each."""

    def __init__(self, providers: Providers) -> None:
        self._providers = providers
        self._known: dict[str, Price | None] = {}

    def price(self, model_id: str) -> Price | None:
        if model_id not in self._known:
            self._known[model_id] = self._look_up(model_id)
        return self._known[model_id]

    def _look_up(self, model_id: str) -> Price | None:
        name, _, model = model_id.partition("/")
        provider = self._providers.get(name)
        provider_id = provider.pricing_name if provider is not None else None
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
        price = self.charged(model_id, override)
        return (price.cost(usage), True) if price is not None else (None, False)

    def charged(self, model_id: str, override: Price | None = None) -> Price | None:
        """The price a run of this model is charged at: the override, nothing on a free
        provider, else the list's; None when unknown."""
        if override is not None:
            return override
        provider = self._providers.get(model_id.partition("/")[0])
        if provider is not None and provider.free:
            return FREE
        return self.price(model_id)
