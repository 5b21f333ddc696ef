"""Which providers a server has, from its settings.

Besides the built-in providers, any number of OpenAI-compatible hosts can be
named: `PROMPTDECK_UPSTREAMS="ollama=http://127.0.0.1:11434/v1,groq=https://api.groq.com/openai/v1"`
makes `ollama/<model>` and `groq/<model>` callable; each one's key comes from
`PROMPTDECK_UPSTREAM_<NAME>_API_KEY` (name upper-cased, `-` as `_`).
"""

from __future__ import annotations

import os

from promptdeck.config import Settings
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.upstream_urls import base_url_problem
from promptdeck.providers.anthropic import AnthropicProvider
from promptdeck.providers.azure import AzureOpenAIProvider
from promptdeck.providers.base import Provider, Providers
from promptdeck.providers.gemini import GeminiProvider
from promptdeck.providers.local import LocalProvider, model_paths
from promptdeck.providers.openai import OpenAIProvider
from promptdeck.providers.openai_responses import OpenAIResponsesProvider


def named_upstreams(spec: str) -> dict[str, str]:
    """`name=url,name=url` as a mapping; names follow the model-id rules."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.replace(";", ",").split(","))):
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or "/" in name or base_url_problem(url):
            raise ValidationFailed(
                f"PROMPTDECK_UPSTREAMS: expected name=http(s)://host/v1 items (no user name or "
                f"password in the URL: give the key as PROMPTDECK_UPSTREAM_<NAME>_API_KEY); got {name!r}"
            )
        found[name] = url
    return found


def check_model(providers: Providers, model_id: str) -> None:
    """Refuse a model this server cannot call, when a version or a fallback is saved or pushed
    rather than when it is first invoked: a provider that is not configured (the message lists
    those that are), or an embedded model with no GGUF file here (it lists those found).
    Upstream model names are free-form (each vendor has its own, and adds more): for them only
    the provider is checked."""
    provider, model = providers.pick(model_id)
    if isinstance(provider, LocalProvider) and model not in provider.installed():
        found = [f"local/{name}" for name in provider.installed()]
        raise ValidationFailed(
            f"model {model_id!r}: no such local model on this server; available: "
            + (", ".join(found) or "none (PROMPTDECK_LOCAL_MODEL_PATH names the GGUF files to load)"),
            details={"model": model_id, "available": found},
            loc=("model",),
        )


def build_providers(settings: Settings) -> Providers:
    providers: list[Provider] = [
        LocalProvider(model_paths(settings.local_model_path), settings.local_context_tokens),
        OpenAIProvider.from_settings(settings),
        OpenAIResponsesProvider.from_settings(settings),
        AzureOpenAIProvider.from_settings(settings),
        AnthropicProvider.from_settings(settings),
        GeminiProvider.from_settings(settings),
    ]
    for name, url in named_upstreams(settings.upstreams).items():
        key = os.environ.get(f"PROMPTDECK_UPSTREAM_{name.upper().replace('-', '_')}_API_KEY", "")
        upstream = OpenAIProvider.configured(settings, url, key, name=name)
        # Its own stored credential, under its name; genai-prices knows no host named by a server.
        upstream.credential_name, upstream.pricing_name = name, None
        upstream.media_family = "openai-compatible"  # images; `file` parts are OpenAI's own
        providers.append(upstream)
    return Providers(providers)
