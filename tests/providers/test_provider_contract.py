"""The provider contract: every HTTP provider, fed the recorded transcripts of its upstream's
documented format (its case table in `tests/providers/transcripts/`), must send the request its
upstream documents and turn the answers into the normalized events (`Started`, `TextDelta`,
`ReasoningDelta`, `ToolCallDelta`, `Usage`, `Finished`, `Failed`), streamed and whole, and turn
error statuses, garbage, cut streams and dead connections into one clean `Failed`.

The SaaS upstreams (OpenAI, Azure OpenAI, Anthropic, Gemini) cannot be reached from the test
machines, so these are recorded transcripts of their documented formats, played by one local
fake upstream (`tests.support.fake_upstream`). Each provider's own behaviour beyond the
contract is tested next to it, in `test_<provider>.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from promptdeck.providers.http_upstream import HttpUpstream
from tests.providers import provider_cases
from tests.providers.transcripts import Answer, BadLine, Cut, ErrorReply, Garbage, ProviderCase
from tests.support.fake_upstream import FakeUpstream, failure, fold, respond, silence, stream
from tests.support.postgres import free_port

# the five providers, and the fixtures that play each one's recorded format (provider_cases.py)
CASES = provider_cases.CASES
case, upstream, make_provider = provider_cases.case, provider_cases.upstream, provider_cases.make_provider


def each(table: Callable[[ProviderCase], tuple[Any, ...]]) -> Any:
    """Parametrize over every provider's rows of one table, as (case, row)."""
    rows = [(case, row) for case in CASES for row in table(case)]
    return pytest.mark.parametrize(
        ("case", "row"), rows, ids=[f"{case.name}-{row.id}" for case, row in rows], indirect=["case"]
    )


streamed_or_whole = pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])


# --- the request ---------------------------------------------------------------------------------


@streamed_or_whole
async def test_request_path_and_credentials(
    case: ProviderCase, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream], streamed: bool
) -> None:
    """Each upstream's API reference: a `POST` to its documented path, with its credential
    header and JSON. (A recorded transcript of the documented format, played by a local server:
    the SaaS upstream cannot be reached here.)"""
    text = next(answer for answer in case.answers if answer.stream is case.text_stream)
    upstream.play(stream(text.stream) if streamed else respond(200, text.whole))
    await case.run(make_provider(), stream=streamed)
    (seen,) = upstream.seen
    assert (seen.method, seen.path) == ("POST", case.paths[0 if streamed else 1])
    assert {name: seen.headers.get(name) for name in case.headers} == case.headers
    assert not [name for name in case.not_sent if name in seen.headers]


# --- answers -------------------------------------------------------------------------------------


async def test_streamed_text_answer(
    case: ProviderCase, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    """The plain text answer as the upstream documents its stream: `Started`, the text deltas,
    the usage, `Finished`. (A recorded transcript of the documented format, played by a local
    server: the SaaS upstream cannot be reached here.)"""
    upstream.play(stream(case.text_stream))
    assert await case.run(make_provider()) == case.text_events


@each(lambda case: case.answers)
async def test_stream_and_non_stream_give_the_same_answer(
    case: ProviderCase, row: Answer, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    """The same answer streamed and as one whole body: identical model, text, reasoning, tool
    calls, usage and stop reason. (Recorded transcripts of the documented formats, played by a
    local server: the SaaS upstream cannot be reached here.)"""
    upstream.play(stream(row.stream), respond(200, row.whole))
    provider = make_provider()
    from_stream, whole = fold(await case.run(provider)), fold(await case.run(provider, stream=False))
    if from_stream.tools:
        from_stream, whole = case.comparable(from_stream), case.comparable(whole)
    assert from_stream == whole
    assert whole.failed is None and whole.usage is not None and whole.usage.input > 0
    assert whole.model == (row.model or case.text_events[0].model)  # type: ignore[union-attr]


# --- upstream errors -----------------------------------------------------------------------------


@streamed_or_whole
@each(lambda case: case.errors)
async def test_error_bodies(
    case: ProviderCase,
    row: ErrorReply,
    upstream: FakeUpstream,
    make_provider: Callable[..., HttpUpstream],
    streamed: bool,
) -> None:
    """Each upstream's error guide: an HTTP status with its documented error body. The status
    picks the code (429 and 5xx retryable), the upstream's own words reach the caller with the
    status, and nothing else is yielded. (A recorded transcript of the documented format,
    played by a local server: the SaaS upstream cannot be reached here.)"""
    upstream.play(respond(row.status, row.body))
    events = await case.run(make_provider(), stream=streamed)
    failed = failure(events)
    assert events == [failed], "an error status yields only the failure"
    assert (failed.code, failed.retryable, failed.retry_after) == (row.code, row.retryable, None)
    assert failed.message.startswith(f"{case.name} upstream at {upstream.base_url}{case.error_at}")
    assert f"HTTP {row.status}" in failed.message
    assert [said for said in row.says if said not in failed.message] == []
    assert [said for said in row.never_says if said in failed.message] == []


@streamed_or_whole
@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0.5", 0.5)])
async def test_rate_limited_with_retry_after(
    case: ProviderCase,
    upstream: FakeUpstream,
    make_provider: Callable[..., HttpUpstream],
    streamed: bool,
    header: str,
    seconds: float,
) -> None:
    """The upstream's documented 429 body with a `Retry-After` header: a retryable
    `upstream_rate_limited` failure that carries the wait. (A recorded transcript of the
    documented format, played by a local server: the SaaS upstream cannot be reached here.)"""
    limited = next(error for error in case.errors if error.status == 429)
    upstream.play(respond(429, limited.body, headers=(("Retry-After", header),)))
    events = await case.run(make_provider(), stream=streamed)
    failed = failure(events)
    assert events == [failed]
    assert (failed.code, failed.retryable, failed.retry_after) == ("upstream_rate_limited", True, seconds)


@each(lambda case: case.garbage)
async def test_garbage_non_streaming_body(
    case: ProviderCase, row: Garbage, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    """A 200 answer to a non-streaming call that is not the upstream's documented answer object:
    a clean, non-retryable `upstream_bad_response` naming the provider, never an exception.
    (Played by a local server: the SaaS upstream cannot be reached here.)"""
    upstream.play(respond(200, row.body, row.content_type))
    events = await case.run(make_provider(), stream=False)
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_bad_response" and not failed.retryable
    assert failed.message.startswith(f"{case.name} upstream") and row.says in failed.message


async def test_streaming_call_answered_with_an_html_page(
    case: ProviderCase, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    """A 200 HTML page (a captive portal, a wrong base URL) where an event stream was asked for:
    `upstream_bad_response` quoting the page's text. (Played by a local server: the SaaS
    upstream cannot be reached here.)"""
    upstream.play(respond(200, b"<html>\n<body>Welcome to nginx!</body>\n</html>\n", "text/html"))
    failed = failure(await case.run(make_provider()))
    assert failed.code == "upstream_bad_response" and "Welcome to nginx" in failed.message


# --- broken streams and connections --------------------------------------------------------------


@each(lambda case: case.bad_lines)
async def test_non_json_data_line_mid_stream(
    case: ProviderCase, row: BadLine, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream]
) -> None:
    """The documented text stream with one `data:` line that is not JSON: what came before it
    reached the caller, then `upstream_bad_response` quoting the line. (A recorded transcript of
    the documented format, spoiled and played by a local server: the SaaS upstream cannot be
    reached here.)"""
    upstream.play(stream([*case.text_stream[: row.at], row.line, *case.text_stream[row.at :]]))
    events = await case.run(make_provider())
    assert events[: row.told] == case.text_events[: row.told]
    failed = failure(events)
    assert failed.code == "upstream_bad_response" and row.says in failed.message


@pytest.mark.parametrize("end", ["clean", "drop"])
@each(lambda case: case.cuts)
async def test_stream_cut_before_the_end(
    case: ProviderCase, row: Cut, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream], end: str
) -> None:
    """The documented text stream stopping before its end (finish reason, end event), its HTTP
    body ending properly (`clean`) or the connection going mid-chunk (`drop`):
    `upstream_stream_cut`, after what already went out; retryable only if nothing did.
    (A recorded transcript of the documented format, cut and played by a local server: the SaaS
    upstream cannot be reached here.)"""
    upstream.play(stream(case.text_stream[: row.delivered], end=end))
    events = await case.run(make_provider())
    assert events[:-1] == case.text_events[: row.told]
    failed = failure(events)
    assert failed.code == "upstream_stream_cut" and failed.message.startswith(f"{case.name} upstream")
    assert failed.retryable == (row.told == 0)


async def test_connection_refused(case: ProviderCase, make_provider: Callable[..., HttpUpstream]) -> None:
    """Nothing listens at the base URL: `upstream_unreachable`, retryable, naming the address,
    streamed or not. (No SaaS upstream is reached here: a local port nobody listens on.)"""
    port = free_port()
    for streamed in (True, False):
        provider = make_provider(**{case.url_option: f"http://127.0.0.1:{port}{case.prefix}"})
        events = await case.run(provider, stream=streamed)
        failed = failure(events)
        assert events == [failed]
        assert failed.code == "upstream_unreachable" and failed.retryable
        assert failed.message.startswith(f"{case.name} upstream") and f"127.0.0.1:{port}" in failed.message


@streamed_or_whole
async def test_upstream_that_never_answers(
    case: ProviderCase, upstream: FakeUpstream, make_provider: Callable[..., HttpUpstream], streamed: bool
) -> None:
    """The upstream accepts the request, then says nothing: `upstream_timeout` after the read
    limit (streaming) or the total limit (whole), not retried: the attempt has spent the whole
    limit. (A local server that never answers: the SaaS upstream cannot be reached here.)"""
    upstream.play(silence)
    began = time.monotonic()
    events = await case.run(make_provider(read_timeout=0.3, total_timeout=0.3), stream=streamed)
    assert time.monotonic() - began < 2
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_timeout" and not failed.retryable  # its whole limit is spent
    assert failed.message.startswith(f"{case.name} upstream") and "0.3" in failed.message
