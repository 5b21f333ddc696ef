"""The contract every provider meets, and the registry that picks one by model id.

Everything a provider receives is provider-neutral; each adapter maps it to its
own wire format:

* messages: `{"role": "system"|"user"|"assistant"|"tool", "content": str | parts}`, where
  parts are `{"type": "text", "text"}`, `{"type": "image", "source", "detail"?}` and
  `{"type": "document", "source", "media_type"?, "name"?}` with each source an https or a
  `data:` URL (domain/content_parts.py); the engine has already refused parts the model cannot
  take (`media_family`, domain/media_capability.py). An assistant message may carry
  `"tool_calls": [{"id", "name", "arguments": str}]`,
  a tool message carries `"tool_call_id"` (and the result as `content`).
* tools: `[{"name", "description", "parameters": JSON Schema}]`.
* tool_choice: `"auto"`, `"none"`, `"required"` or `{"name": tool}`.
* response_format: `{"type": "text"}`, `{"type": "json_object"}` or
  `{"type": "json_schema", "name", "schema", "strict"?}`.
* params: temperature, top_p, max_tokens, stop, seed, presence_penalty,
  frequency_penalty, reasoning_effort (`"low"|"medium"|"high"`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import field
from typing import Any, Protocol

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.events import Event
from promptdeck.domain.values import immutable

# Thinking budgets for providers that take a token budget instead of an effort level.
REASONING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}


@immutable
class ProviderCall:
    """What to ask an upstream: the model name without its provider prefix, and the rest
    in the neutral shapes above."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = True  # a hint: a provider may answer a non-streaming call in one piece
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # The workspace's stored credential for this provider, when it has one; None means the
    # provider's own configuration (environment variables).
    api_key: str | None = None
    base_url: str | None = None
    connect_timeout: float | None = None  # the variant's own limit, when it sets one
    # A caller's raw changes to the upstream request: {"body": {...} merged key by key,
    # "headers": {...}, "url": "..."} (Vellum's raw_overrides).
    raw_overrides: dict[str, Any] | None = None
    keep_raw: bool = False  # attach the upstream's raw answer to `Finished` (Vellum's expand_raw)


class Provider(Protocol):
    name: str
    # Facts about the upstream, read by the engine, the price list and the console in place
    # of provider names (each class sets them; a named OpenAI-compatible upstream per instance):
    free: bool  # runs cost nothing (the embedded model): priced 0 without a price list
    credential_name: str | None  # the workspace credential it calls with (shared: `openai`); None: takes none
    pricing_name: str | None  # its provider id in genai-prices; None: genai-prices lists no prices for it
    media_family: str  # which content parts its API takes: a key of domain.media_capability.FAMILIES

    def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        """Yield `Started`, deltas, `Usage`, then `Finished` — or `Failed` at any point, and
        nothing after it. Must not raise for upstream trouble: failures are events."""
        ...

    def payload(self, call: ProviderCall) -> dict[str, Any]:
        """The exact JSON body the upstream would receive, without sending it."""
        ...

    async def aclose(self) -> None: ...


class Providers:
    """Providers by name; a model id `provider/model` picks one."""

    def __init__(self, providers: list[Provider]) -> None:
        self._by_name = {p.name: p for p in providers}

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    @property
    def credential_names(self) -> list[str]:
        """The workspace credentials the providers call with (several may share one)."""
        return sorted({p.credential_name for p in self._by_name.values() if p.credential_name is not None})

    def get(self, name: str) -> Provider | None:
        return self._by_name.get(name)

    def pick(self, model_id: str) -> tuple[Provider, str]:
        name, _, model = model_id.partition("/")
        provider = self._by_name.get(name)
        if provider is None or not model:
            known = ", ".join(sorted(self._by_name))
            raise ValidationFailed(
                f"model {model_id!r} names no configured provider; use 'provider/model' with one of: {known}",
                loc=("model",),
            )
        return provider, model

    async def aclose(self) -> None:
        for provider in self._by_name.values():
            await provider.aclose()
