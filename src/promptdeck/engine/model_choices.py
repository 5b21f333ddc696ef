"""Models to suggest in the console's model picker, per configured provider.

Suggestions only — any model of an upstream may be typed (saving checks only its provider;
an embedded model must be installed: `providers/registry.check_model`): the embedded provider's
installed models, the workspace's price overrides, and the models the price list (genai-prices)
knows for the provider's vendor (chat models: not embeddings, speech or images). The
price list is read once per process; it is a bundled snapshot.
"""

from __future__ import annotations

from functools import lru_cache

from genai_prices import data_snapshot

from promptdeck.providers.base import Provider, Providers
from promptdeck.providers.local import LocalProvider

PER_PROVIDER = 80  # a picker, not a catalogue
NOT_CHAT: tuple[str, ...] = (
    *("embed", "tts", "whisper", "dall-e", "image", "moderation", "transcribe", "audio", "realtime"),
    *("ada", "babbage", "curie", "davinci", "computer-use"),  # completion-era and tool-only models
)


@lru_cache(maxsize=16)
def priced_models(vendor: str) -> tuple[str, ...]:
    """The non-deprecated model ids genai-prices lists for a vendor (`openai`, `anthropic`…)."""
    provider = next((p for p in data_snapshot.get_snapshot().providers if p.id == vendor), None)
    if provider is None:
        return ()
    names = [
        m.id
        for m in provider.models
        if not getattr(m, "deprecated", False)
        and not any(word in m.id for word in NOT_CHAT)
        and not m.id.startswith("ft:")  # fine-tune patterns, not callable names
        and not m.id.endswith("-")
    ]
    return tuple(sorted(names)[:PER_PROVIDER])


def installed_models(provider: Provider) -> list[str]:
    """The models a provider has on this machine (the embedded provider's GGUF files found, by
    name); none for an upstream."""
    return provider.installed() if isinstance(provider, LocalProvider) else []


def model_choices(providers: Providers, overridden: list[str]) -> dict[str, list[str]]:
    """Provider name -> suggested `provider/model` ids, for every configured provider."""
    choices: dict[str, list[str]] = {}
    for name in providers.names:
        provider, _ = providers.pick(f"{name}/any")
        models = [m for m in overridden if m.partition("/")[0] == name]
        models += [f"{name}/{m}" for m in installed_models(provider)]
        if provider.pricing_name is not None:
            models += [f"{name}/{m}" for m in priced_models(provider.pricing_name)]
        choices[name] = list(dict.fromkeys(models))
    return choices
