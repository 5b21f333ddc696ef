"""Recorded transcripts of each HTTP provider's documented upstream format, and the case table
each provider contributes to the provider contract (`tests/providers/test_provider_contract.py`).

The SaaS upstreams (OpenAI, Azure OpenAI, Anthropic, Gemini) cannot be reached from the test
machines, so these are recordings of their documented wire formats, played by the local fake
upstream (`tests.support.fake_upstream`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from promptdeck.domain.events import STOP, Event, Finished, Started, TextDelta, Usage
from promptdeck.providers.http_upstream import HttpUpstream
from tests.support.fake_upstream import FakeUpstream, Folded, provider_maker


def text_answer(model: str, usage: Usage, *before_text: Event) -> list[Event]:
    """The events of the plain text answer every transcript records ("The capital of France is
    Paris.", in three deltas), after `before_text` (reasoning, say)."""
    texts = [TextDelta("The capital"), TextDelta(" of France is"), TextDelta(" Paris.")]
    return [Started(model), *before_text, *texts, usage, Finished(STOP)]


@dataclass(frozen=True)
class Answer:
    """One answer recorded both ways: as the upstream streams it and as one whole body."""

    id: str
    stream: list[bytes]
    whole: dict[str, Any]
    model: str | None = None  # the model it names, when not the text answer's


@dataclass(frozen=True)
class ErrorReply:
    """An error status with the upstream's documented error body, and the failure it must be."""

    id: str
    status: int
    body: dict[str, Any] | bytes
    code: str
    retryable: bool
    says: tuple[str, ...] = ()  # in the failure's message, beside "HTTP {status}"
    never_says: tuple[str, ...] = ()  # never in it


@dataclass(frozen=True)
class Garbage:
    """A 200 answer to a non-streaming call that is not the documented answer object."""

    id: str
    body: bytes
    content_type: str
    says: str  # in the `upstream_bad_response` failure's message


@dataclass(frozen=True)
class Cut:
    """The text answer's stream cut after `delivered` SSE events, when `told` of its normalized
    events have reached the caller."""

    id: str
    delivered: int
    told: int


@dataclass(frozen=True)
class BadLine:
    """The text answer's stream with a `data:` line that is not JSON put in after `at` events;
    `told` events reach the caller before the failure, which quotes `says`."""

    id: str
    at: int
    line: bytes
    told: int
    says: str


@dataclass(frozen=True)
class ProviderCase:
    """What one HTTP provider contributes to the contract."""

    name: str  # the provider's name, which starts each failure message ("{name} upstream at ...")
    cls: type[HttpUpstream]
    key: str
    run: Callable[..., Awaitable[list[Event]]]  # run(provider, stream=True) with the case's messages
    text_stream: list[bytes]  # the plain text answer, streamed
    text_events: list[Event]  # what it must become
    answers: tuple[Answer, ...]  # answers that must fold the same streamed and whole
    errors: tuple[ErrorReply, ...]
    garbage: tuple[Garbage, ...]
    cuts: tuple[Cut, ...]
    paths: tuple[str, str]  # the request path (after the base URL's path): streamed, whole
    headers: dict[str, str]  # sent with every request (lower-case names)
    not_sent: tuple[str, ...] = ()  # headers no request carries
    bad_lines: tuple[BadLine, ...] = ()
    prefix: str = ""  # the path the base URL ends in
    url_option: str = "base_url"  # the provider's option naming its base URL
    error_at: str = ""  # what the failure message names after the base URL
    comparable: Callable[[Folded], Folded] = field(default=lambda folded: folded)

    def fixtures(self) -> tuple[Any, Any]:
        """An `upstream` fixture (a fresh `FakeUpstream`) and a `make_provider` fixture
        (providers of this case aimed at it), for a provider's own test module."""

        @pytest.fixture
        async def upstream() -> AsyncIterator[FakeUpstream]:
            async with FakeUpstream(prefix=self.prefix) as server:
                yield server

        @pytest.fixture
        async def make_provider(upstream: FakeUpstream) -> AsyncIterator[Callable[..., Any]]:
            async with provider_maker(self.cls, upstream.base_url, self.key, self.url_option) as make:
                yield make

        return upstream, make_provider
