"""The one fake upstream of the suite: a real HTTP server on 127.0.0.1 that records each request
and answers it with a scripted reply, and what a caller makes of the events a provider turns
the replies into.

In the test's own event loop, answering each request with the next reply in turn:

    async with FakeUpstream(prefix="/v1") as upstream:
        upstream.play(respond(200, {...}), stream([b"data: ...\\n\\n"]))
        ...                                # point a provider at upstream.base_url
        upstream.seen                      # each request exactly as it arrived

or from a background thread (`with FakeUpstream(...) as upstream:`), for a server process that
calls it; a subclass decides each answer itself by overriding `answer` (see `fake_openai`).

It speaks just enough HTTP/1.1 for httpx: streamed answers use chunked encoding, so a cut
stream is a real protocol failure, and every answer closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar

import orjson

from promptdeck.domain.events import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.providers.http_upstream import HttpUpstream

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Headers = tuple[tuple[str, str], ...]


# --- the server ----------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as it reached the upstream, and how far its answer got."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]
    chunks_sent: int = 0
    hung_up: bool = False  # the caller closed the connection before the answer was complete

    @property
    def model(self) -> str:
        return str(self.body.get("model"))


@dataclass
class FakeUpstream:
    """A real socket server that answers each request with the next reply given to `play`
    (or as a subclass's `answer` decides). `prefix` is the path its `base_url` ends in (`/v1`
    for OpenAI-style base URLs)."""

    prefix: str = ""
    replies: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _open: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def play(self, *replies: Reply) -> None:
        self.replies = list(replies)

    async def answer(self, seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.replies.pop(0)(reader, writer)

    # in the running event loop

    async def open(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, backlog=1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Hang up on connections still held open and end every handler."""
        assert self._server is not None
        self._server.close()
        for writer in self._open.values():
            writer.close()
        for task in self._open:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*self._open, return_exceptions=True), timeout=5)
        await self._server.wait_closed()

    async def __aenter__(self) -> FakeUpstream:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    # from a background thread

    def start(self) -> None:
        started = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.open())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake upstream did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = self._thread = None

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open[task] = writer
        seen: Seen | None = None
        try:
            seen = await read_request(reader)
            self.seen.append(seen)
            await self.answer(seen, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            if seen is not None:
                seen.hung_up = True
        finally:
            writer.close()
            del self._open[task]


async def read_request(reader: asyncio.StreamReader) -> Seen:
    request_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = orjson.loads(await reader.readexactly(length)) if length else {}
    method, path, *_ = [*request_line.split(" "), "", ""]
    return Seen(method, path, headers, body if isinstance(body, dict) else {})


# --- replies -------------------------------------------------------------------------------------


def head(status: int, content_type: str, framing: str, extra: Headers = ()) -> bytes:
    """A response head that closes the connection; `framing` is its Content-Length or
    Transfer-Encoding line."""
    lines = f"HTTP/1.1 {status} {_phrase(status)}\r\nContent-Type: {content_type}\r\n{framing}\r\n"
    lines += "".join(f"{name}: {value}\r\n" for name, value in extra)
    return (lines + "Connection: close\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a vendor's own status, such as Anthropic's 529
        return "Unknown"


def respond(
    status: int, body: dict[str, Any] | bytes, content_type: str = "application/json", headers: Headers = ()
) -> Reply:
    """One whole response with a Content-Length (and any extra `headers`, e.g. Retry-After)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(status, content_type, f"Content-Length: {len(raw)}", headers) + raw)
        await writer.drain()

    return reply


def stream(
    events: list[bytes], *, end: str = "clean", pause: float = 0.0, content_type: str = "text/event-stream"
) -> Reply:
    """An SSE response in chunked encoding, one chunk per event. `end`: `clean` (terminating
    chunk), `drop` (connection closed mid-body) or `stall` (say nothing more, keep it open)."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, content_type, "Transfer-Encoding: chunked"))
        for event in events:
            if writer.is_closing():
                return
            writer.write(chunk(event))
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        if end == "clean":
            writer.write(b"0\r\n\r\n")
        elif end == "drop":
            writer.write(b'40\r\ndata: {"choices":')  # half a chunk, then the connection goes
        await writer.drain()
        if end == "stall":
            await reader.read()  # until the client hangs up

    return reply


async def silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the request, then never answer, until the client hangs up."""
    await reader.read()


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose accept queue is already full,
    so a new connection attempt hangs (the kernel drops its SYN) until the client's connect
    timeout: a connect timeout without any outside network."""
    listener = socket.socket()
    held: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(2):  # fill the queue; the second attempt already hangs
            client = socket.socket()
            client.settimeout(0.2)
            with contextlib.suppress(OSError):
                client.connect(("127.0.0.1", port))
            held.append(client)
        yield port
    finally:
        for client in held:
            client.close()
        listener.close()


# --- providers aimed at it -----------------------------------------------------------------------

P = TypeVar("P", bound=HttpUpstream)


@contextlib.asynccontextmanager
async def provider_maker(
    cls: type[P], base_url: str, key: str, url_option: str = "base_url"
) -> AsyncIterator[Callable[..., P]]:
    """Builds providers of `cls` aimed at a fake upstream (or wherever the option named
    `url_option` says) with `key` unless `api_key=` is given, and closes them all afterwards."""
    made: list[P] = []

    def make(**options: Any) -> P:
        url = options.pop(url_option, base_url)
        provider = cls(url, options.pop("api_key", key), **options)  # type: ignore[call-arg]
        made.append(provider)
        return provider

    try:
        yield make
    finally:
        for provider in made:
            await provider.aclose()


# --- what the caller ends up with ----------------------------------------------------------------


@dataclass
class Folded:
    """What a caller ends up with, whichever way the events arrived."""

    model: str | None = None
    text: str = ""
    reasoning: str = ""
    tools: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: Usage | None = None
    stop: str | None = None
    failed: Failed | None = None


def fold(events: list[Event]) -> Folded:
    """Fold events, checking the protocol: `Started` first, one ending, nothing after it."""
    out = Folded()
    for position, event in enumerate(events):
        assert out.stop is None and out.failed is None, f"event after the end: {event}"
        if isinstance(event, Started):
            assert position == 0 and out.model is None
            out.model = event.model
        elif isinstance(event, Failed):
            out.failed = event
        else:
            assert out.model is not None, f"{event} before Started"
            if isinstance(event, TextDelta):
                out.text += event.text
            elif isinstance(event, ReasoningDelta):
                out.reasoning += event.text
            elif isinstance(event, ToolCallDelta):
                tool = out.tools.setdefault(event.index, {"id": None, "name": None, "arguments": ""})
                tool["id"] = event.id or tool["id"]
                tool["name"] = event.name or tool["name"]
                tool["arguments"] += event.arguments_delta
            elif isinstance(event, Usage):
                out.usage = event
            elif isinstance(event, Finished):
                out.stop = event.stop_reason
    assert (out.stop is None) != (out.failed is None), "exactly one of Finished / Failed"
    return out


def failure(events: list[Event]) -> Failed:
    folded = fold(events)
    assert folded.failed is not None, f"expected a failure, got {events}"
    return folded.failed
