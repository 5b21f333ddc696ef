"""The server-sent-event reader against the WHATWG "event stream interpretation" rules."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptdeck.providers.event_stream import EventStreamParser, SseEvent, read_events
from promptdeck.providers.http_client import ConnectionBroken


def parse(body: str | bytes) -> list[SseEvent]:
    """All events of a whole body fed in one piece and ended cleanly."""
    parser = EventStreamParser()
    events = parser.feed(body.encode() if isinstance(body, str) else body)
    return events + parser.close()


def test_data_lines_of_one_event_are_joined_with_newlines() -> None:
    assert parse("data: first\ndata: second\ndata\ndata:third\n\n") == [
        SseEvent(None, "first\nsecond\n\nthird")
    ]


def test_exactly_one_leading_space_is_removed_and_nothing_else() -> None:
    assert parse("data:  two spaces \ndata:\ttab\n\n") == [SseEvent(None, " two spaces \n\ttab")]


@pytest.mark.parametrize("end", ["\r\n", "\n", "\r"], ids=["CRLF", "LF", "CR"])
def test_every_line_ending(end: str) -> None:
    body = f"event: a{end}data: 1{end}{end}data: 2{end}{end}"
    assert parse(body) == [SseEvent("a", "1"), SseEvent(None, "2")]


def test_mixed_line_endings_and_a_crlf_split_between_chunks() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: 1\r") == []
    assert parser.feed(b"\n\r") == [SseEvent(None, "1")]  # CRLF is one line end, then a blank line
    assert parser.feed(b"data: 2\n\r\n") == [SseEvent(None, "2")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    body = ": keep-alive\n:\ndata: x\nfoo: bar\nnocolon\n: another\n\n"
    assert parse(body) == [SseEvent(None, "x")]


def test_event_type_applies_to_one_event_only() -> None:
    body = "event: delta\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"
    assert parse(body) == [SseEvent("delta", "1"), SseEvent(None, "2"), SseEvent(None, "3")]


def test_event_type_of_a_block_without_data_is_dropped_too() -> None:
    assert parse("event: ping\n\ndata: 1\n\n") == [SseEvent(None, "1")]


def test_id_is_kept_across_events_and_ignored_with_a_nul() -> None:
    body = "id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n"
    assert parse(body) == [
        SseEvent(None, "a", "7"),
        SseEvent(None, "b", "7"),
        SseEvent(None, "c", "7"),
        SseEvent(None, "d", ""),
    ]


@pytest.mark.parametrize(
    ("line", "retry"),
    [
        ("retry: 3000", 3000),
        ("retry:0", 0),
        ("retry: 3s", None),
        ("retry: -1", None),
        ("retry: 1.5", None),
        ("retry:", None),
        ("retry: \uff12", None),  # a fullwidth digit,
    ],
)
def test_retry_is_kept_only_when_all_ascii_digits(line: str, retry: int | None) -> None:
    parser = EventStreamParser()
    assert parser.feed(f"{line}\ndata: x\n\n".encode()) == [SseEvent(None, "x")]
    assert parser.retry == retry


def test_a_later_invalid_retry_keeps_the_earlier_one() -> None:
    parser = EventStreamParser()
    parser.feed(b"retry: 500\n\nretry: soon\n\n")
    assert parser.retry == 500


def test_a_bom_is_skipped_at_the_start_only() -> None:
    assert parse("\ufeffdata: 1\n\n\ufeffdata: 2\n\n") == [SseEvent(None, "1")]  # 2nd: field "\ufeffdata"
    parser = EventStreamParser()
    bom = "\ufeff".encode()
    assert parser.feed(bom[:2]) == []
    assert parser.feed(bom[2:] + b"data: 1\n\n") == [SseEvent(None, "1")]


def test_utf8_split_between_chunks_and_invalid_bytes() -> None:
    body = "data: naïve €\n\n".encode()
    parser = EventStreamParser()
    events = [event for i in range(len(body)) for event in parser.feed(body[i : i + 1])]  # byte by byte
    assert events == [SseEvent(None, "naïve €")]
    assert parse(b"data: \xff\n\n") == [SseEvent(None, "\ufffd")]


def test_a_final_event_without_the_blank_line_is_dispatched_at_a_clean_end() -> None:
    assert parse("data: 1\n\ndata: 2") == [SseEvent(None, "1"), SseEvent(None, "2")]
    assert parse("data: 1\n\ndata: 2\n") == [SseEvent(None, "1"), SseEvent(None, "2")]


def test_no_event_for_a_block_without_data() -> None:
    assert parse("event: x\nid: 1\nretry: 5\n: c\n\n\n\n") == []
    assert parse("data:\n\n") == [SseEvent(None, "")]  # an empty data line is still data


def test_lines_that_are_no_event_stream_are_kept_to_show() -> None:
    parser = EventStreamParser()
    parser.feed(b'{"error": "quota"}\n<html>' + b"x" * 500 + b"\n")
    assert parser.stray.startswith('{"error": "quota"} <html>xxx') and len(parser.stray) == 200
    clean = EventStreamParser()
    clean.feed(b": ping\nevent: a\ndata: 1\n\n")
    assert clean.stray == ""


BODY = (
    '\ufeff: hello\r\nretry: 10\nid: 1\nevent: delta\ndata: {"a":\ndata:  1}\r\n\r\n'
    "data: naïve €\rdata: two\r\rnoise\n\nevent: end\ndata: [DONE]"
).encode()


@given(st.sets(st.integers(min_value=1, max_value=len(BODY) - 1)))
def test_any_split_into_chunks_gives_the_same_events(cuts: set[int]) -> None:
    whole = EventStreamParser()
    expected = whole.feed(BODY) + whole.close()
    assert expected == [
        SseEvent("delta", '{"a":\n 1}', "1"),
        SseEvent(None, "naïve €\ntwo", "1"),
        SseEvent("end", "[DONE]", "1"),
    ]
    bounds = [0, *sorted(cuts), len(BODY)]
    parser = EventStreamParser()
    events = [event for a, b in itertools.pairwise(bounds) for event in parser.feed(BODY[a:b])]
    assert events + parser.close() == expected
    assert (parser.retry, parser.last_event_id, parser.stray) == (10, "1", "noise")


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_every_single_split_position(cut: int) -> None:
    parser = EventStreamParser()
    events = parser.feed(BODY[:cut]) + parser.feed(BODY[cut:]) + parser.close()
    assert [event.data for event in events] == ['{"a":\n 1}', "naïve €\ntwo", "[DONE]"]


# --- over a response body ------------------------------------------------------------------------


async def body(*chunks: bytes, broken: bool = False) -> AsyncIterator[bytes]:
    """A response body as providers/http_client.py hands it over: every chunk received, then
    the error of a dropped connection, if any."""
    for chunk in chunks:
        yield chunk
    if broken:
        raise ConnectionBroken("the upstream closed the connection")


async def test_events_received_before_a_cut_are_not_lost() -> None:
    """The events completed before a dropped connection come through, then the error. The
    unfinished event at the cut is not dispatched."""
    cut = body(b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: {"c": 3}\ndata: {"partial', broken=True)
    seen: list[SseEvent] = []
    with pytest.raises(ConnectionBroken):
        async for event in read_events(cut, EventStreamParser()):
            seen.append(event)
    assert seen == [SseEvent(None, '{"a": 1}'), SseEvent(None, '{"b": 2}')]


async def test_a_clean_end_dispatches_the_last_event_and_checkpoints_run() -> None:
    checks: list[int] = []
    chunks = body(b": ping\n\n", b"data: 1\n\ndata: 2\n\n", b"data: 3")
    seen = [
        event.data
        async for event in read_events(chunks, EventStreamParser(), lambda: checks.append(len(checks)))
    ]
    assert seen == ["1", "2", "3"]
    assert len(checks) >= 3  # before every event (and after chunks that complete none)


async def test_a_checkpoint_that_raises_ends_the_reading() -> None:
    def expired() -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        async for _ in read_events(body(b": ping\n\n", b"data: 1\n\n"), EventStreamParser(), expired):
            pass
