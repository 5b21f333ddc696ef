"""A provider known only by its facts (its name, whether it is free, the credential it calls
with, its name in genai-prices), for tests of what the gateway reads from a provider's facts
and never from its name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from promptdeck.providers.base import Provider, Providers


@dataclass(frozen=True)
class FakeProvider:
    name: str = "fake"
    free: bool = False
    credential_name: str | None = None
    pricing_name: str | None = None


def providers(*fakes: FakeProvider | Any) -> Providers:
    """`Providers` over fakes that have only the facts."""
    return Providers([cast(Provider, fake) for fake in fakes])
