"""The benchmarks' load generator: a raw-socket HTTP/1.1 keep-alive caller and a closed loop.

Requests are pre-built bytes; a response is parsed only as far as needed to know when it ends
(status line, `Content-Length` or chunked framing) and when its first streamed event came, so
the generator costs a few microseconds per request and is not what a benchmark measures.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, cast

HOST = "127.0.0.1"


class ConnectionClosed(Exception):
    """The server closed a keep-alive connection while a request was in flight."""


@dataclass(frozen=True, slots=True)
class Framing:
    """How a streamed body shows its first event and its end: the first HTTP chunk that starts
    with `first` is the first event; a stream is complete when its last chunk contains `end`."""

    first: bytes
    end: bytes


SSE = Framing(b"data:", b"data: [DONE]")
"""Server-sent events ending with `data: [DONE]` (OpenAI, Fetch Hive)."""


@dataclass(slots=True)
class Reply:
    status: int
    first_ns: int  # when the first event (streams) or the whole body (JSON) had arrived
    done_ns: int
    complete: bool  # a stream ended as its framing says; a JSON body was whole
    body: bytes = b""


class HttpCaller(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight.

    Parses just enough (status, Content-Length or chunked framing) to know when a
    response ends, and stamps the arrival of the first event's chunk, so that the
    generator's cost per request stays a few microseconds."""

    def __init__(self, capture: bool = False) -> None:
        self.capture = capture
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Reply] | None = None
        self.closed = False
        self.framing = SSE
        self._reset()

    def _reset(self) -> None:
        self.in_head = True
        self.chunked = False
        self.length = 0
        self.status = 0
        self.first_ns = 0
        self.last_data = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionClosed(str(exc or "closed by the server")))

    def send(self, request: bytes, framing: Framing = SSE) -> asyncio.Future[Reply]:
        if self.closed or self.transport is None:
            raise ConnectionClosed("connection already closed")
        self._reset()
        self.framing = framing
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        buf = self.buf
        buf += data
        if self.in_head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            self.status = int(head[9:12])
            if b"transfer-encoding: chunked" in head:
                self.chunked = True
            else:
                start = head.find(b"content-length:")
                stop = head.find(b"\r\n", start)  # none when it is the head's last line
                self.length = int(head[start + 15 : stop if stop >= 0 else None]) if start >= 0 else 0
            del buf[: end + 4]
            self.in_head = False
        if not self.chunked:
            if len(buf) >= self.length:
                if self.capture:
                    self.body.append(bytes(buf[: self.length]))
                del buf[: self.length]
                self._finish(now, now, True)
            return
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buf[:line_end]).split(b";", 1)[0], 16)
            if size == 0:
                if len(buf) < line_end + 4:
                    return
                del buf[: line_end + 4]  # assumes no trailers: no server here sends any
                self._finish(self.first_ns or now, now, self.framing.end in self.last_data)
                return
            end = line_end + 2 + size
            if len(buf) < end + 2:
                return
            chunk = bytes(buf[line_end + 2 : end])
            if not self.first_ns and chunk.startswith(self.framing.first):
                self.first_ns = now
            self.last_data = chunk
            if self.capture:
                self.body.append(chunk)
            del buf[: end + 2]

    def _finish(self, first: int, done: int, complete: bool) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Reply(self.status, first, done, complete, b"".join(self.body)))


async def connect(port: int, capture: bool = False) -> HttpCaller:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: HttpCaller(capture), HOST, port)
    return protocol


def build_request(port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class Tally:
    """What one phase measured (nanosecond stamps, turned into figures by the caller)."""

    latencies: list[int] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    capped: bool = False

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


async def answered(
    connections: list[HttpCaller],
    slot: int,
    port: int,
    request: bytes,
    tally: Tally,
    framing: Framing = SSE,
) -> Reply | None:
    """One request on a kept-alive connection: its complete 200 reply, or None with the error
    counted. A closed connection is replaced (OSError when it cannot be)."""
    try:
        reply = await connections[slot].send(request, framing)
    except ConnectionClosed as exc:
        tally.error(f"connection closed: {exc}")
        connections[slot] = await connect(port)
        return None
    if reply.status != 200 or not reply.complete:
        tally.error(f"HTTP {reply.status}, complete={reply.complete}")
        return None
    return reply


async def closed_loop(
    port: int,
    connections: list[HttpCaller],
    request: bytes,
    count: int,
    cap_s: float,
    framing: Framing = SSE,
) -> Tally:
    """Each connection sends its next request as soon as its last one ended, until `count`
    requests were sent or `cap_s` seconds passed (a request that hangs is given 30 s more)."""
    tally = Tally()
    remaining = count
    deadline = time.perf_counter() + cap_s

    async def caller(slot: int) -> None:
        nonlocal remaining
        while remaining > 0:
            if time.perf_counter() > deadline:
                tally.capped = True
                return
            remaining -= 1
            sent = time.perf_counter_ns()
            try:
                reply = await answered(connections, slot, port, request, tally, framing)
            except OSError as refused:
                tally.error(f"cannot reconnect: {refused}")
                return
            if reply is None:
                continue
            tally.latencies.append(reply.done_ns - sent)
            tally.firsts.append(reply.first_ns - sent)

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(caller(slot)) for slot in range(len(connections))]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), cap_s + 30)
    except TimeoutError:
        tally.capped = True
        tally.error("a request hung past the phase's time cap")
        for slot, connection in enumerate(connections):  # a hung connection cannot be reused
            if connection.waiter is not None and connection.transport is not None:
                connection.transport.close()
                connections[slot] = await connect(port)
    tally.elapsed_s = time.perf_counter() - started
    return tally


def close_all(connections: list[HttpCaller]) -> None:
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
