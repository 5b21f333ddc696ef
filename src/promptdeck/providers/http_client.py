"""The HTTP/1.1 client of upstream calls: keep-alive connections per origin on asyncio
protocols, each response parsed by httptools (uvicorn's parser, already a dependency).

Why not aiohttp's client, DESIGN.md's first choice: measured here, it spent 63-75 µs of CPU
on each small JSON call to a local upstream, and this client 14-18 µs, each alone in the same
run (bench/README.md, "The upstream client"). Every invoke makes at least one upstream call,
and every streamed event comes through it.

It does what an upstream call needs and no more: a POST with a body; keep-alive; TLS; bodies
delimited by length, by chunks or by the connection's end; gzip and deflate (64 MiB inflated at
most: a few compressed bytes can inflate to gigabytes); a time limit to connect and one on
silence (between any two bytes, the head's first included); a bounded buffer per connection
(reading pauses while a slow consumer has `BUFFER_HIGH` bytes unread).
No redirects (one would carry the credential wherever it points), no proxies, no cookies.
Header names and values are checked, so that no caller-supplied text can add a header or a
request (response splitting).

A response's body is handed over whole (`read`) or chunk by chunk (`async for`). When the
connection breaks midway, every byte received before the break is handed over first, then
`ConnectionBroken` is raised: a stream's last events are not lost.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

BUFFER_HIGH = 1 << 20  # unread body bytes past which a connection stops reading
BUFFER_LOW = 1 << 18  # ... and reads again below this
MAX_HEAD_BYTES = 1 << 16  # status line and headers
MAX_BODY_BYTES = 64 << 20  # a whole body `read` at once, or a compressed one inflated
INFLATE_STEP = 1 << 20  # bytes inflated at once
IDLE_PER_ORIGIN = 256  # connections kept open, idle, per origin
KEEPALIVE_SECONDS = 30.0  # an idle connection older than this is closed, not reused
MAX_ORIGINS = 1_000  # URLs' parsed origins kept (the hot path parses each URL once)
DEFAULT_HEADERS = ("User-Agent: promptdeck", "Accept-Encoding: gzip, deflate")
FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})  # never taken
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110)
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")


class ClientError(Exception):
    """Anything that ends an upstream call before its answer was whole."""


class InvalidUrl(ClientError):
    """The URL cannot be called (its scheme, host or port)."""


class CannotConnect(ClientError):
    """No connection could be made (refused, unresolvable, TLS, or not within the time limit)."""


class ConnectionBroken(ClientError):
    """The connection ended or failed before the answer was whole."""


class BadResponse(ClientError):
    """The upstream did not answer in HTTP/1.x, or its head or body was too large."""


class UnsendableRequest(ClientError):
    """A header's name or value cannot be sent as it is (a line break would add a header)."""


class Response:
    """One answer: its status and headers (names in lower case; repeated ones joined with
    ", "), then its body. Close it (or read it whole) to give its connection back."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: deque[bytes] = deque()
        self._unread = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._head: asyncio.Future[None] = connection.loop.create_future()

    async def read(self, limit: int = MAX_BODY_BYTES) -> bytes:
        """The whole body (raises `BadResponse` past `limit` bytes)."""
        parts = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > limit:
                self.close()
                raise BadResponse(f"the answer was longer than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        try:
            while True:
                if self._chunks:
                    chunk = self._chunks.popleft()
                    self._unread -= len(chunk)
                    if self._unread < BUFFER_LOW:
                        connection.resume(self)
                    yield chunk
                elif self._complete:
                    return
                elif self._error is not None:
                    raise self._error
                else:
                    self._waiter = connection.loop.create_future()
                    await self._waiter
        finally:
            self.close()

    def close(self) -> None:
        """Done with it: an answer not yet whole cannot leave its connection reusable."""
        if not self._complete:
            self._connection.abandon(self)

    # ── fed by the connection ───────────────────────────────────────────────

    def _add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._unread += len(chunk)
        if self._unread > BUFFER_HIGH:
            self._connection.pause()
        self._wake()

    def _end(self, error: BaseException | None = None) -> None:
        if error is None:
            self._complete = True
        elif not self._complete and self._error is None:
            self._error = error
            if not self._head.done():
                self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it carries one response at a time."""

    def __init__(self, client: UpstreamClient, origin: _Origin) -> None:
        self.loop = asyncio.get_running_loop()
        self._client = client
        self._origin = origin
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._silence = 0.0
        self._last = 0.0  # the loop's time of the last byte received
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._head_bytes = 0
        self._decoder: Any = None
        self._inflated = 0  # bytes a compressed answer inflated to so far
        self._ends_with_connection = False
        self.closed = False
        self.idle_since = 0.0

    def start(self, head: bytes, body: bytes, silence: float) -> Response:
        assert self._transport is not None and self._response is None
        response = self._response = Response(self)
        self._silence, self._last = silence, self.loop.time()
        self._head_bytes, self._decoder, self._inflated, self._ends_with_connection = 0, None, 0, False
        self._timer = self.loop.call_at(self._last + silence, self._check_silence)
        self._transport.writelines((head, body))
        return response

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self, response: Response) -> None:
        if self._paused and self._response is response and self._transport is not None:
            self._paused = False
            self._last = self.loop.time()  # silence is counted again from here
            self._transport.resume_reading()

    def abandon(self, response: Response) -> None:
        if self._response is response:
            self._finish(ConnectionBroken("the answer was not read to its end"), reusable=False)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    @property
    def usable(self) -> bool:
        return not self.closed and self._transport is not None and not self._transport.is_closing()

    def _check_silence(self) -> None:
        """One timer per answer, moved on only when it fires (not per chunk). While reading is
        paused for a slow consumer, the silence is ours, not the upstream's: it is not counted."""
        now = self.loop.time()
        if self._paused:
            self._last = now
        due = self._last + self._silence
        if now >= due:
            self._timer = None
            self._finish(TimeoutError(f"nothing received for {self._silence:g} s"), reusable=False)
        else:
            self._timer = self.loop.call_at(due, self._check_silence)

    def _finish(self, error: BaseException | None, *, reusable: bool) -> None:
        response, self._response = self._response, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if response is not None:
            response._end(error)
        if reusable and not self.closed:
            self._client.release(self._origin, self)
        else:
            self.close()

    # ── asyncio.Protocol ────────────────────────────────────────────────────

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it

    def data_received(self, data: bytes) -> None:
        if self._response is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self._last = self.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            ours = exc.__context__  # raised by a callback below
            self._finish(
                ours if isinstance(ours, ClientError) else BadResponse(f"not an HTTP/1.x answer ({exc})"),
                reusable=False,
            )

    def eof_received(self) -> bool | None:
        self.closed = True  # not to be taken from the pool meanwhile
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client.forget(self._origin, self)
        response = self._response
        if response is None:
            return
        if exc is None and self._ends_with_connection and response._head.done():
            self._flush_decoder(response)
            self._finish(None, reusable=False)  # a body delimited by the connection's end
        else:
            why = f"{type(exc).__name__}: {exc}" if exc else "the upstream closed the connection"
            self._finish(ConnectionBroken(why), reusable=False)

    # ── httptools callbacks ─────────────────────────────────────────────────

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise BadResponse(f"its headers were longer than {MAX_HEAD_BYTES} bytes")
        response = self._current()
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        found = response.headers.get(key)
        response.headers[key] = text if found is None else f"{found}, {text}"

    def on_headers_complete(self) -> None:
        response = self._current()
        response.status = self._parser.get_status_code()
        headers = response.headers
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        self._ends_with_connection = "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )
        response._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self._current()
        if self._decoder is None:
            response._add(body)
            return
        try:  # a few compressed bytes may inflate to gigabytes: at most a step at a time, and a total
            while body:
                inflated = self._decoder.decompress(body, INFLATE_STEP)
                self._inflated += len(inflated)
                if self._inflated > MAX_BODY_BYTES:
                    raise BadResponse(f"its compressed answer inflates past {MAX_BODY_BYTES} bytes")
                if inflated:
                    response._add(inflated)
                body = self._decoder.unconsumed_tail
        except zlib.error as exc:
            raise BadResponse(f"its compressed body could not be read ({exc})") from None

    def on_message_complete(self) -> None:
        response = self._current()
        self._flush_decoder(response)
        self._finish(None, reusable=self._parser.should_keep_alive())

    def _current(self) -> Response:
        if self._response is None:  # a second answer to one request
            raise BadResponse("it sent more than one answer")
        return self._response

    def _flush_decoder(self, response: Response) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                response._add(rest)


class _Origin:
    """Where a URL's connections go, and what its requests start with."""

    __slots__ = ("host", "host_header", "idle", "key", "port", "secure")

    def __init__(self, key: str, host: str, port: int, secure: bool, host_header: str) -> None:
        self.key, self.host, self.port, self.secure, self.host_header = key, host, port, secure, host_header
        self.idle: list[_Connection] = []


class UpstreamClient:
    """Keep-alive connections per origin (scheme, host and port), made on first use inside the
    running loop; `aclose` closes them all."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._origins: dict[str, _Origin] = {}  # by scheme://host:port
        self._targets: dict[str, tuple[_Origin, str]] = {}  # by URL: origin and request target
        self._open: set[_Connection] = set()

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout: float, silence: float
    ) -> Response:
        """Send the request and wait for the answer's head. `silence`: the most seconds without
        a byte from the upstream, before the head and between any two bytes after it."""
        origin, target = self._target(url)
        head = _request_head(target, origin.host_header, headers, len(body))
        connection = self._idle(origin) or await self._connect(origin, connect_timeout)
        response = connection.start(head, body, silence)
        try:
            await response._head
        except BaseException:  # a failure, or the caller gone: the connection is not reusable
            response.close()
            raise
        return response

    def release(self, origin: _Origin, connection: _Connection) -> None:
        if self._origins.get(origin.key) is origin and len(origin.idle) < IDLE_PER_ORIGIN:
            connection.idle_since = time.monotonic()
            origin.idle.append(connection)
        else:
            connection.close()

    def forget(self, origin: _Origin, connection: _Connection) -> None:
        self._open.discard(connection)
        if connection in origin.idle:
            origin.idle.remove(connection)

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._origins.clear()
        self._targets.clear()

    def _idle(self, origin: _Origin) -> _Connection | None:
        """The most recently used idle connection still fit to carry a request."""
        now = time.monotonic()
        while origin.idle:
            connection = origin.idle.pop()
            if connection.usable and now - connection.idle_since < KEEPALIVE_SECONDS:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: _Origin, within: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context = (self._ssl or _default_ssl()) if origin.secure else None
        try:
            async with asyncio.timeout(within):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            raise CannotConnect(f"no connection within {within:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise CannotConnect(f"{type(exc).__name__}: {exc}") from None
        self._open.add(connection)
        return connection

    def _target(self, url: str) -> tuple[_Origin, str]:
        found = self._targets.get(url)
        if found is not None:
            return found
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise InvalidUrl(f"{exc}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidUrl("only http:// and https:// URLs with a host can be called")
        secure = parts.scheme == "https"
        default = 443 if secure else 80
        port = port or default
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidUrl(f"the host {host!r} cannot be spelled in DNS") from None
        shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
        host_header = shown if port == default else f"{shown}:{port}"
        key = f"{parts.scheme}://{host_header}"
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) >= MAX_ORIGINS:  # their idle connections close as they are released
                self._origins.clear()
                self._targets.clear()  # none may lead to a forgotten origin, whose connections close
            origin = self._origins[key] = _Origin(key, ascii_host, port, secure, host_header)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if _UNSAFE_VALUE.search(target) or " " in target:
            raise InvalidUrl("the URL's path holds a space or a line break")
        if len(self._targets) >= MAX_ORIGINS:
            self._targets.clear()
        self._targets[url] = (origin, target)
        return origin, target


def _request_head(target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", *DEFAULT_HEADERS]
    for name, value in headers.items():
        if name.lower() in FRAMING_HEADERS:
            continue  # the client's own: a second Content-Length would let a body hide a request
        if not _TOKEN.fullmatch(name) or _UNSAFE_VALUE.search(value):
            raise UnsendableRequest(f"the header {name!r} has a name or value that cannot be sent")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise UnsendableRequest("a header holds a character HTTP headers cannot carry") from None


_SSL: ssl.SSLContext | None = None


def _default_ssl() -> ssl.SSLContext:
    """The system's trusted certificates, made once (loading them costs milliseconds)."""
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL
