"""Image and document parts on the wire (issue 18, part 3): every HTTP provider, fed a call
with an image URL, an image and a PDF as data: URLs (and a PDF by URL where its API takes
one), must send exactly the request its upstream documents (`transcripts/media.py`), and read
the answer as usual. (Recorded transcripts of the documented formats, played by a local fake
upstream: the SaaS upstreams cannot be reached here.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from promptdeck.config import Settings
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.http_upstream import HttpUpstream
from promptdeck.providers.registry import build_providers
from tests.providers import provider_cases
from tests.providers.transcripts import ProviderCase
from tests.providers.transcripts.media import CHAT_MESSAGES, EXPECTED, MESSAGES, URL_DOCUMENT
from tests.providers.transcripts.openai_compatible import CASE as OPENAI
from tests.support.fake_upstream import FakeUpstream, fold, stream

# the five providers, and the fixtures that play each one's recorded format (provider_cases.py)
CASES = provider_cases.CASES
case, upstream, make_provider = provider_cases.case, provider_cases.upstream, provider_cases.make_provider

ANSWER = "The capital of France is Paris."  # every transcript's text answer


async def ask(provider: Any, messages: list[dict[str, Any]], model: str = "vision-model") -> str:
    events = [event async for event in provider.stream(ProviderCall(model, messages, stream=True))]
    folded = fold(events)
    assert folded.failed is None, folded.failed
    return folded.text


async def test_parts_reach_the_upstream_in_its_documented_shape(
    case: ProviderCase, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    upstream.play(stream(case.text_stream))
    assert await ask(make_provider(), MESSAGES) == ANSWER
    (seen,) = upstream.seen
    expected, _ = EXPECTED[case.name]
    assert {key: seen.body.get(key) for key in expected} == expected


async def test_a_pdf_by_url_goes_as_a_url_where_the_api_takes_one(
    case: ProviderCase, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    _, expected = EXPECTED[case.name]
    if expected is None:
        pytest.skip(f"{case.name} takes a PDF's bytes only: the engine fetches a URL first")
    upstream.play(stream(case.text_stream))
    assert await ask(make_provider(), URL_DOCUMENT) == ANSWER
    (seen,) = upstream.seen
    assert {key: seen.body.get(key) for key in expected} == expected


async def test_text_content_is_sent_as_before(
    case: ProviderCase, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    """A string content stays a string on the wire (no part list where there was none)."""
    upstream.play(stream(case.text_stream))
    await ask(make_provider(), [{"role": "user", "content": "Hello"}])
    body = upstream.seen[0].body
    sent = body.get("messages") or body.get("input") or body.get("contents")
    assert sent is not None
    assert "Hello" in str(sent) and "image" not in str(sent) and "'type': 'text'" not in str(sent)


async def test_a_named_openai_compatible_upstream_sends_openai_chat_parts() -> None:
    """`PROMPTDECK_UPSTREAMS` hosts speak OpenAI's Chat Completions: images as `image_url`
    parts, and (said by the registry) images only, no `file` parts."""
    async with FakeUpstream(prefix="/v1") as server:
        providers = build_providers(Settings(upstreams=f"vision={server.base_url}"))
        try:
            provider, model = providers.pick("vision/llava")
            assert provider.media_family == "openai-compatible"
            server.play(stream(OPENAI.text_stream))
            images = [MESSAGES[0], {**MESSAGES[1], "content": MESSAGES[1]["content"][:3]}]
            assert await ask(provider, images, model) == ANSWER
            assert server.seen[0].body["messages"] == [
                CHAT_MESSAGES[0],
                {**CHAT_MESSAGES[1], "content": CHAT_MESSAGES[1]["content"][:3]},
            ]
        finally:
            await providers.aclose()


def test_each_provider_says_which_parts_it_takes() -> None:
    providers = build_providers(Settings())
    families = {name: providers.get(name).media_family for name in providers.names}  # type: ignore[union-attr]
    assert families == {
        "anthropic": "anthropic",
        "azure": "openai-chat",
        "gemini": "gemini",
        "local": "text-only",
        "openai": "openai-chat",
        "openai-responses": "openai-responses",
    }
