"""The cost of a run: `PriceList` against genai-prices itself (tiers over 200k input tokens,
cached and cache-write tokens), free providers, unknown prices, and a workspace's own price
for a model genai-prices does not know, set and removed through the admin API. What is free
and which price list a provider uses are the provider's own facts, not its name."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from promptdeck.config import Settings
from promptdeck.domain.events import Usage
from promptdeck.engine.pricing import Price, PriceList
from promptdeck.providers.registry import build_providers
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script, StartDeck, push_prompt, run_of
from tests.support.fake_providers import FakeProvider, providers
from tests.support.invoking import invoke

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

MODELS = {  # promptdeck model id -> (genai-prices provider, model)
    "openai/gpt-4o": ("openai", "gpt-4o"),
    "openai/gpt-4o-mini": ("openai", "gpt-4o-mini"),
    "openai-responses/o3-mini": ("openai", "o3-mini"),
    "azure/gpt-4o": ("azure", "gpt-4o"),
    "anthropic/claude-3-5-haiku-latest": ("anthropic", "claude-3-5-haiku-latest"),
    "anthropic/claude-sonnet-4-5": ("anthropic", "claude-sonnet-4-5"),  # dearer over 200k input
    "gemini/gemini-2.5-pro": ("google", "gemini-2.5-pro"),  # dearer over 200k input
    "gemini/gemini-2.5-flash": ("google", "gemini-2.5-flash"),
}
USAGES = {  # (input incl. cached and cache writes, cached, cache writes, output)
    "small": (1_000, 0, 0, 500),
    "cached": (8_000, 6_000, 0, 300),
    "cache-writes": (8_000, 2_000, 3_000, 300),
    "at-200k": (200_000, 0, 0, 10),
    "over-200k": (200_001, 0, 0, 10),
    "long-and-cached": (250_000, 10_000, 5_000, 1_000),
}


def genai_cost(model_id: str, tokens: tuple[int, int, int, int]) -> float:
    provider, model = MODELS[model_id]
    given, cached, written, output = tokens
    usage = PriceUsage(
        input_tokens=given, cache_read_tokens=cached, cache_write_tokens=written, output_tokens=output
    )
    return float(calc_price(usage, model_ref=model, provider_id=provider).total_price)


def price_list() -> PriceList:
    """The price list of a server with the built-in providers."""
    return PriceList(build_providers(Settings()))


def usage(tokens: tuple[int, int, int, int]) -> Usage:
    given, cached, written, output = tokens
    return Usage(input=given, cached_input=cached, cache_write_input=written, output=output)


@pytest.mark.parametrize("tokens", USAGES.values(), ids=list(USAGES))
@pytest.mark.parametrize("model_id", MODELS)
def test_the_price_list_agrees_with_genai_prices(model_id: str, tokens: tuple[int, int, int, int]) -> None:
    cost, known = price_list().cost(model_id, usage(tokens))

    assert known is True
    assert cost == pytest.approx(genai_cost(model_id, tokens), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("tokens", [(1_000, 500), (200_000, 10), (200_001, 10), (3, 4096)])
@pytest.mark.parametrize("model_id", MODELS)
def test_a_budgets_float_estimate_is_the_exact_cost(model_id: str, tokens: tuple[int, int]) -> None:
    """A budget's worst-case hold is priced without a `Usage` (`Price.estimate`), tiers and all:
    it must be the cost a run of that usage is charged."""
    prompt, output = tokens
    price = price_list().charged(model_id)
    exact, _ = price_list().cost(model_id, Usage(input=prompt, output=output))

    assert price is not None and exact is not None
    assert price.estimate(prompt, output) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("model_id", ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro"])
def test_long_prompts_are_priced_at_the_higher_tier(model_id: str) -> None:
    prices = price_list()
    at, over = (prices.cost(model_id, usage(USAGES[name]))[0] for name in ("at-200k", "over-200k"))

    assert at is not None and over is not None
    assert over > 1.5 * at  # one more token, yet every token at the long-prompt rate


def test_cached_tokens_cost_less_than_fresh_ones() -> None:
    prices = price_list()
    fresh = prices.cost("openai/gpt-4o", Usage(input=8_000, output=300))[0]
    cached = prices.cost("openai/gpt-4o", Usage(input=8_000, cached_input=6_000, output=300))[0]

    assert fresh is not None and cached is not None and cached < fresh


@pytest.mark.parametrize("model_id", ["openai/no-such-model-xyz", "mystery/gpt-4o", "ollama/llama3"])
def test_an_unknown_price_is_none_and_said_to_be_unknown(model_id: str) -> None:
    assert price_list().cost(model_id, Usage(input=100, output=10)) == (None, False)


def test_the_local_model_is_free() -> None:
    assert price_list().cost("local/smollm2-135m-instruct", Usage(input=100, output=10)) == (0.0, True)


def test_a_providers_own_facts_decide_its_price() -> None:
    free = FakeProvider("gratis", free=True)
    priced_as_openai = FakeProvider("my-gateway", pricing_name="openai")
    unpriced = FakeProvider("openai")  # a name alone prices nothing: its facts say nothing
    prices = PriceList(providers(free, priced_as_openai, unpriced))
    tokens = Usage(input=1_000, output=500)

    assert prices.cost("gratis/whatever-model", tokens) == (0.0, True)
    assert prices.cost("my-gateway/gpt-4o", tokens) == price_list().cost("openai/gpt-4o", tokens)
    assert prices.cost("my-gateway/gpt-4o", tokens)[1] is True
    assert prices.cost("openai/gpt-4o", tokens) == (None, False)


def test_an_override_wins_over_the_price_list_and_prices_the_cache_rates() -> None:
    override = Price.flat(input=2, output=8, cached_input=0.5, cache_write=3)
    tokens = Usage(input=1_000, cached_input=200, cache_write_input=100, output=50)

    cost, known = price_list().cost("openai/gpt-4o", tokens, override)

    assert known is True
    assert cost == float((700 * 2 + Decimal("200") * Decimal("0.5") + 100 * 3 + 50 * 8) / Decimal(10**6))
    no_cache_rates = Price.flat(input=2, output=8).cost(tokens)
    assert no_cache_rates == float(Decimal(1_000 * 2 + 50 * 8) / Decimal(10**6))  # at the input rate


# ── through a live server ────────────────────────────────────────────────────────


def cost_of_a_run(deck: Deck, deployment: str) -> dict[str, object]:
    response = invoke(deck, deployment)
    assert response.status_code == 200, response.text
    return run_of(deck, response.json()["request_id"])


def test_a_known_models_runs_are_priced_by_genai_prices(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.scripts["gpt-4o-mini"] = Script(usage=(1_234, 56))
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "mini", "openai/gpt-4o-mini")

    run = cost_of_a_run(deck, "mini")

    assert run["price_known"] is True and run["usage_estimated"] is False
    assert run["cost"] == pytest.approx(genai_cost("openai/gpt-4o-mini", (1_234, 0, 0, 56)), rel=1e-12)


def test_a_workspace_price_prices_an_unknown_model_until_it_is_deleted(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["house-model"] = Script(usage=(1_500, 250))
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "house", "openai/house-model")
    before = cost_of_a_run(deck, "house")
    assert (before["cost"], before["price_known"]) == (None, False)

    with deck.client() as client:
        put = client.put(
            "/api/prices/openai/house-model", json={"input_per_mtok": 2.5, "output_per_mtok": 10}
        )
        assert put.status_code == 200, put.text
        assert put.json()["model"] == "openai/house-model"
        listed = client.get("/api/prices").json()["data"]
    assert [(p["model"], p["input_per_mtok"], p["output_per_mtok"]) for p in listed] == [
        ("openai/house-model", 2.5, 10)
    ]

    priced = cost_of_a_run(deck, "house")

    assert priced["price_known"] is True
    assert priced["cost"] == (1_500 * 2.5 + 250 * 10) / 1_000_000
    assert (priced["input_tokens"], priced["output_tokens"], priced["version_number"]) == (1_500, 250, 1)

    with deck.client() as client:
        assert client.delete("/api/prices/openai/house-model").status_code == 204
        assert client.get("/api/prices").json()["data"] == []
        again = client.delete("/api/prices/openai/house-model")
        assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    after = cost_of_a_run(deck, "house")
    assert (after["cost"], after["price_known"]) == (None, False)


def test_a_price_is_checked_before_it_is_stored(start_deck: StartDeck) -> None:
    deck = start_deck()
    with deck.client() as client:
        negative = client.put(
            "/api/prices/openai/house-model", json={"input_per_mtok": -1, "output_per_mtok": 1}
        )
        unscoped = client.put("/api/prices/house-model", json={"input_per_mtok": 1, "output_per_mtok": 1})
        missing = client.put("/api/prices/openai/house-model", json={"input_per_mtok": 1})
        stored = client.get("/api/prices").json()["data"]

    assert negative.status_code == 422 and "input_per_mtok" in negative.json()["error"]["message"]
    assert unscoped.status_code == 422 and "provider/model" in unscoped.json()["error"]["message"]
    assert missing.status_code == 422 and "output_per_mtok" in missing.json()["error"]["message"]
    assert stored == []
