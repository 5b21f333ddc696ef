"""Server-sent events, read as the WHATWG HTML standard's "event stream interpretation" says.

`EventStreamParser` is incremental: feed it the body's chunks as they arrive, and it returns
the events they complete. `read_events` runs it over a response body's chunks.

The rules followed: lines end in CRLF, LF or CR (a CRLF split across two chunks is one line
end); a BOM at the very start is skipped; a line starting with `:` is a comment; otherwise
`name: value`, with exactly one space after the colon removed (a line without a colon is a
name with an empty value); `data` lines append to the event's data, joined with "\\n";
`event` sets its type, reset after each dispatch; `id` sets the last event ID (kept across
events, ignored when it holds a NUL); `retry` sets the reconnection time in ms (ignored
unless all ASCII digits); other names are ignored. A blank line dispatches the event if it
has data, and drops it otherwise.

One decision beyond the standard, which discards an unfinished event at the end of the
stream: a body that *ends cleanly* (`close()`) dispatches its last event even without the
blank line after it, since some upstreams end that way and their last event is whole. A
dropped connection (see `read_events`) still discards it: it may be cut short.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from dataclasses import dataclass

STRAY_SHOWN = 200  # characters kept of what is not an event stream, to show in a failure


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event. `event` is None when the stream named no type (the standard's
    "message"); `id` is the last event ID in force when it was dispatched."""

    event: str | None
    data: str
    id: str | None = None


class EventStreamParser:
    """Bytes (or text) in, complete events out, keeping only the unfinished line and event
    between chunks: each chunk is decoded and split once, and a long line arriving in many
    chunks is joined once, when it ends (the line reader it replaces re-copied and re-split
    everything pending at every chunk)."""

    __slots__ = (
        "_after_cr",
        "_at_start",
        "_data",
        "_event",
        "_last_id",
        "_partial",
        "_undecoded",
        "retry",
        "stray",
    )

    def __init__(self) -> None:
        self._after_cr = False  # the last chunk ended in CR: a LF starting the next one is its pair
        self._at_start = True  # nothing decoded yet: a BOM here is skipped
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self._partial: list[str] = []  # pieces of the line not yet ended
        self._undecoded = b""  # the start of a UTF-8 sequence cut by a chunk boundary
        self.retry: int | None = None  # the reconnection time in ms the stream last asked for
        self.stray = ""  # the start of the lines that are no event-stream field, to show in a failure

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events this chunk of the body completes (invalid UTF-8 becomes U+FFFD)."""
        if self._undecoded:
            chunk = self._undecoded + chunk
        text, used = codecs.utf_8_decode(chunk, "replace", False)
        self._undecoded = chunk[used:] if used < len(chunk) else b""
        return self.feed_text(text)

    def feed_text(self, text: str) -> list[SseEvent]:
        """The events this piece of already decoded text completes."""
        if self._at_start and text:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._after_cr:
            self._after_cr = False
            if text[:1] == "\n":
                text = text[1:]
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        unended = lines.pop()
        if self._partial:
            if not lines:
                self._partial.append(unended)
                return []
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
            self._partial = []
        if unended:
            self._partial.append(unended)
        events: list[SseEvent] = []
        data = self._data
        for line in lines:  # one loop, no call per line: this is the per-event hot path
            if not line:
                if data:
                    events.append(
                        SseEvent(self._event, data[0] if len(data) == 1 else "\n".join(data), self._last_id)
                    )
                    data.clear()
                self._event = None
            elif line.startswith("data: "):  # the usual form of the usual field, without partition
                data.append(line[6:])
            elif line[0] != ":":
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    self._event = value or None
                elif name == "id":
                    if "\0" not in value:
                        self._last_id = value
                elif name == "retry":
                    if value.isascii() and value.isdigit():
                        self.retry = int(value)
                elif len(self.stray) < STRAY_SHOWN:
                    self.stray = f"{self.stray} {line.strip()}".strip()[:STRAY_SHOWN]
        return events

    def close(self) -> list[SseEvent]:
        """At the clean end of the body: its last line, and its last event even without the
        blank line after it."""
        text = self._undecoded.decode(errors="replace")
        self._undecoded = b""
        self._after_cr = False
        return self.feed_text(text + "\n\n")


async def read_events(
    body: AsyncIterable[bytes],
    parser: EventStreamParser,
    checkpoint: Callable[[], None] | None = None,
) -> AsyncGenerator[SseEvent, None]:
    """The events of a response body as its chunks arrive. `checkpoint` runs before each event
    is handed on and after each chunk that completes none (a stream of keep-alive comments
    still reaches it), e.g. to enforce a time limit by raising.

    On a dropped connection the body (providers/http_client.py) hands over every byte it
    received before it raises, so the events completed before the drop are handed on, then
    the error is raised; the event the drop cut short is not (`close` is not called).
    """
    async for chunk in body:
        events = parser.feed(chunk)
        if not events and checkpoint is not None:
            checkpoint()
        for event in events:
            if checkpoint is not None:
                checkpoint()
            yield event
    for event in parser.close():
        if checkpoint is not None:
            checkpoint()
        yield event
