"""The contract every provider meets, and the registry that picks one by model id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.events import Event


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """What to ask an upstream: the model name without its provider prefix, chat messages
    and generation parameters (promptdeck's names: temperature, max_tokens, top_p, stop…)."""

    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = True  # a hint: a provider may answer a non-streaming call in one piece


class Provider(Protocol):
    name: str

    def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        """Yield `Started`, deltas, `Usage`, then `Finished` — or `Failed` at any point, and
        nothing after it. Must not raise for upstream trouble: failures are events."""
        ...

    async def aclose(self) -> None: ...


class Providers:
    """Providers by name; a model id `provider/model` picks one."""

    def __init__(self, providers: list[Provider]) -> None:
        self._by_name = {p.name: p for p in providers}

    def pick(self, model_id: str) -> tuple[Provider, str]:
        name, _, model = model_id.partition("/")
        provider = self._by_name.get(name)
        if provider is None or not model:
            known = ", ".join(sorted(self._by_name))
            raise ValidationFailed(
                f"model {model_id!r} names no configured provider; use 'provider/model' with one of: {known}"
            )
        return provider, model

    async def aclose(self) -> None:
        for provider in self._by_name.values():
            await provider.aclose()
