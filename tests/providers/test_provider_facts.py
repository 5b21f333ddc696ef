"""Each provider holds its own facts — free or not, the credential it calls with, its name in
genai-prices — and the gateway reads those facts, never a provider's name."""

from __future__ import annotations

import asyncio

import pytest

from promptdeck.config import Settings
from promptdeck.domain.errors import NotFound
from promptdeck.providers.registry import build_providers
from promptdeck.services import Services
from tests.support.fake_providers import FakeProvider
from tests.support.fake_providers import providers as fake_providers

FAKE = FakeProvider("fake", credential_name="fake")
FREE = FakeProvider("gratis", free=True)
SHARING = FakeProvider("fake-v2", credential_name="fake")  # another API of the same vendor, one key for both


def test_the_built_in_providers_facts() -> None:
    providers = build_providers(Settings(upstreams="house=http://127.0.0.1:9/v1"))
    facts = {
        name: (p.free, p.credential_name, p.pricing_name)
        for name in providers.names
        if (p := providers.get(name)) is not None
    }

    assert facts == {
        "local": (True, None, None),
        "openai": (False, "openai", "openai"),
        "openai-responses": (False, "openai", "openai"),
        "azure": (False, "azure", "azure"),
        "anthropic": (False, "anthropic", "anthropic"),
        "gemini": (False, "gemini", "google"),
        "house": (False, "house", None),  # a named upstream: its own key, no known prices
    }
    assert providers.credential_names == ["anthropic", "azure", "gemini", "house", "openai"]


def test_credentials_are_those_the_providers_call_with() -> None:
    providers = fake_providers(FAKE, FREE, SHARING)

    assert providers.names == ["fake", "fake-v2", "gratis"]
    assert providers.credential_names == ["fake"]  # shared once; the free one takes none


def test_a_provider_that_takes_no_credential_refuses_one() -> None:
    services = Services.__new__(Services)  # only `providers` is read before the refusal
    services.providers = fake_providers(FAKE, FREE)

    with pytest.raises(NotFound, match="'gratis'"):
        asyncio.run(services.store_credential("ws", "gratis", "sk-x", None))
