"""The `local` provider's payload (`Provider.payload`, `POST /api/deployments/{name}/payload`):
what the embedded llama.cpp model is given, rendered without loading any model file."""

from __future__ import annotations

from pathlib import Path

from promptdeck.providers.base import ProviderCall
from promptdeck.providers.local import LocalProvider

MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


async def test_payload_is_the_messages_and_sampling_parameters() -> None:
    """providers.md, local: the chat messages (formatted later by the GGUF's chat template) and
    the sampling parameters as given; tools and response_format are not supported and do not
    appear. No model file is loaded to render it."""
    provider = LocalProvider({"smollm2-135m-instruct": Path("/nonexistent/model.gguf")})
    params = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 32, "stop": ["\n"], "seed": 7}
    call = ProviderCall(
        "smollm2-135m-instruct",
        MESSAGES,
        params,
        tools=[{"name": "f", "description": "", "parameters": {"type": "object"}}],
        response_format={"type": "json_object"},
    )
    try:
        assert provider.payload(call) == {
            "model": "local/smollm2-135m-instruct",
            "messages": MESSAGES,
            **params,
        }
    finally:
        await provider.aclose()
