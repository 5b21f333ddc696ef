"""The upstream HTTP client (providers/http_client.py) against a raw asyncio server on loopback
that answers each request with exactly the bytes a test scripts: every way a body can be
delimited, keep-alive, compression, time limits, broken connections, a slow reader's bounded
buffer, and headers that would smuggle a request."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from promptdeck.providers.http_client import (
    BUFFER_HIGH,
    MAX_BODY_BYTES,
    BadResponse,
    CannotConnect,
    ConnectionBroken,
    UnsendableRequest,
    UpstreamClient,
)

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    """Answers the n-th request with `answers[n]` (the last one again after that)."""

    answers: list[Answer]
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/call?x=1"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                await self.answers[min(len(self.requests), len(self.answers)) - 1](writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(*answers: Answer) -> Server:
        server = Server(list(answers))
        listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
        server.port = listening.sockets[0].getsockname()[1]
        servers.append(listening)
        return server

    yield start
    for listening in servers:
        listening.close()


def sends(*parts: bytes, pause: float = 0.0, then_close: bool = False) -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        if then_close:
            writer.close()

    return answer


def json_answer(body: bytes = b'{"ok": true}', status: str = "200 OK") -> Answer:
    return sends(
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def post(client: UpstreamClient, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    response = await client.post(url, b'{"q": 1}', headers, connect_timeout=2, silence=1)
    return response.status, response.headers, await response.read()


async def test_a_json_answer_and_keep_alive(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(json_answer(), json_answer(b'{"second": 2}', "429 Too Many Requests"))
    client = UpstreamClient()
    assert await post(client, server.url, Authorization="Bearer k") == (
        200,
        {"content-type": "application/json", "content-length": "12"},
        b'{"ok": true}',
    )
    status, _, body = await post(client, server.url)
    assert (status, body, server.connections) == (429, b'{"second": 2}', 1)  # one connection, reused
    first = server.requests[0]
    assert first.startswith(b"POST /v1/call?x=1 HTTP/1.1\r\nHost: 127.0.0.1:") and first.endswith(b'{"q": 1}')
    assert b"\r\nAuthorization: Bearer k\r\n" in first and first.count(b"Content-Length: 8") == 1
    await client.aclose()


async def test_chunks_arrive_as_they_are_sent(serve: Callable[..., Awaitable[Server]]) -> None:
    gate = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata:1\r\n")
        await gate.wait()
        writer.write(b"6\r\ndata:2\r\n0\r\n\r\n")

    server = await serve(answer)
    client = UpstreamClient()
    response = await client.post(server.url, b"{}", {}, connect_timeout=2, silence=2)
    chunks = []
    async for chunk in response:
        chunks.append(chunk)
        gate.set()  # the second is sent only once the first has arrived
    assert chunks == [b"data:1", b"data:2"]
    await client.aclose()


async def test_a_body_may_end_with_the_connection(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(sends(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", then_close=True))
    client = UpstreamClient()
    assert (await post(client, server.url))[2] == b"until the end"
    await client.aclose()


async def test_gzip_is_undone(serve: Callable[..., Awaitable[Server]]) -> None:
    body = gzip.compress(b'{"long": "' + b"z" * 5000 + b'"}')
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    server = await serve(sends(head.encode() + body))
    client = UpstreamClient()
    assert (await post(client, server.url))[2] == b'{"long": "' + b"z" * 5000 + b'"}'
    assert b"Accept-Encoding: gzip, deflate" in server.requests[0]
    await client.aclose()


async def test_a_compressed_answer_cannot_inflate_without_bound(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    """A hostile upstream (a workspace may point a credential at any URL) sends ~70 KB that
    inflate to 70 MiB: the inflating stops once past the bound (`read`'s own limit, which would
    say "longer than", is not what stops it)."""
    bomb = gzip.compress(b"\0" * (MAX_BODY_BYTES + (6 << 20)))
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
    server = await serve(sends(head.encode() + bomb))
    client = UpstreamClient()
    with pytest.raises(BadResponse, match="inflates past"):
        await post(client, server.url)
    await client.aclose()


async def test_a_broken_connection_hands_over_what_came_first(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(
        sends(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n9\r\nsecond", then_close=True
        )
    )
    client = UpstreamClient()
    response = await client.post(server.url, b"{}", {}, connect_timeout=2, silence=2)
    received = []
    with pytest.raises(ConnectionBroken):
        async for chunk in response:
            received.append(chunk)
    assert b"".join(received) == b"firstsecond"  # the cut chunk's bytes too
    await client.aclose()


async def test_silence_is_limited_before_and_after_the_head(serve: Callable[..., Awaitable[Server]]) -> None:
    never = sends(b"", pause=5)
    head_only = sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfive.", pause=5)
    for answer in (never, head_only):
        server = await serve(answer)
        client = UpstreamClient()
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            response = await client.post(server.url, b"{}", {}, connect_timeout=2, silence=0.3)
            await response.read()
        assert asyncio.get_running_loop().time() - started < 2
        await client.aclose()


async def test_a_refused_connection_cannot_connect() -> None:
    client = UpstreamClient()
    with pytest.raises(CannotConnect):
        await post(client, "http://127.0.0.1:1/v1/call")  # port 1: nothing listens there
    await client.aclose()


@pytest.mark.parametrize(
    "name, value",
    [
        ("X-Evil", "a\r\nX-Injected: 1"),
        ("X-Evil", "a\nb"),
        ("Bad Name", "v"),
        ("X-Nul", "a\x00b"),
        ("X-Wide", "ü€"),
    ],
)
async def test_no_header_can_add_a_header_or_a_request(
    serve: Callable[..., Awaitable[Server]], name: str, value: str
) -> None:
    server = await serve(json_answer())
    client = UpstreamClient()
    with pytest.raises(UnsendableRequest):
        await client.post(server.url, b"{}", {name: value}, connect_timeout=2, silence=1)
    assert server.requests == []
    await client.aclose()


async def test_framing_headers_are_the_clients_own(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(json_answer())
    client = UpstreamClient()
    smuggle = {
        "Content-Length": "0",
        "Transfer-Encoding": "chunked",
        "Host": "elsewhere",
        "Connection": "close",
    }
    await post(client, server.url, **smuggle)
    head = server.requests[0].split(b"\r\n\r\n")[0].lower()
    assert head.count(b"content-length") == 1 and b"transfer-encoding" not in head
    assert b"elsewhere" not in head and b"connection" not in head
    await client.aclose()


async def test_a_slow_reader_bounds_the_buffer(serve: Callable[..., Awaitable[Server]]) -> None:
    size = 8 * BUFFER_HIGH
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()
    server = await serve(sends(head, b"x" * size))
    client = UpstreamClient()
    response = await client.post(server.url, b"{}", {}, connect_timeout=2, silence=0.3)
    await asyncio.sleep(0.8)  # the reader waits: the connection must stop reading, and the
    assert response._unread <= 2 * BUFFER_HIGH  # silence it makes is not the upstream's
    assert len(await response.read()) == size
    await client.aclose()


async def test_an_abandoned_answer_does_not_reuse_its_connection(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(
        sends(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", pause=0.2), json_answer()
    )
    client = UpstreamClient()
    response = await client.post(server.url, b"{}", {}, connect_timeout=2, silence=2)
    response.close()  # the caller went away midway
    assert (await post(client, server.url))[2] == b'{"ok": true}'
    assert server.connections == 2
    await client.aclose()


async def test_an_answer_that_is_not_http(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(sends(b"SSH-2.0-OpenSSH\r\n\r\n", then_close=True))
    client = UpstreamClient()
    with pytest.raises(BadResponse):
        await post(client, server.url)
    await client.aclose()


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    close_after = sends(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", then_close=True
    )  # keep-alive by default, then closed anyway
    server = await serve(close_after, json_answer())
    client = UpstreamClient()
    await post(client, server.url)
    await asyncio.sleep(0.1)  # the close arrives while the connection is idle
    assert (await post(client, server.url))[2] == b'{"ok": true}'
    assert server.connections == 2
    await client.aclose()
