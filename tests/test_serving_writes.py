"""A response's head leaves with its body (promptdeck/serving_writes.py).

The unit tests drive `HeadWithBody` over a transport that records what reaches the socket, on
a real event loop. The last test counts, with the kernel's own TCP_INFO counters, the data
segments a client receives from a live server: one per small JSON answer, where uvicorn alone
sends two (its head, then its body)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptdeck.serving_writes import HeadWithBody
from tests.conftest import make_settings, seed
from tests.support.live_server import LiveServer, start_server


class Recorded(asyncio.Transport):
    """What reached the socket, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", (bytes(data),)))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", tuple(bytes(d) for d in list_of_data)))

    def close(self) -> None:
        self.calls.append(("close", ()))
        self.closed = True

    def abort(self) -> None:
        self.calls.append(("abort", ()))

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 7


def run(steps: Any) -> list[tuple[str, tuple[bytes, ...]]]:
    async def main() -> list[tuple[str, tuple[bytes, ...]]]:
        raw = Recorded()
        await steps(HeadWithBody(raw, asyncio.get_running_loop()))
        return raw.calls

    return asyncio.run(main())


def test_a_head_and_its_body_go_out_in_one_call() -> None:
    async def steps(writes: HeadWithBody) -> None:
        writes.hold_next()
        writes.write(b"HEAD")
        writes.write(b"BODY")
        writes.write(b"MORE")
        await asyncio.sleep(0)

    assert run(steps) == [("writelines", (b"HEAD", b"BODY")), ("write", (b"MORE",))]


def test_a_head_with_nothing_after_it_goes_out_when_the_loop_turns() -> None:
    """A stream's first event may be far off: its head must not wait for it."""

    async def steps(writes: HeadWithBody) -> None:
        writes.hold_next()
        writes.write(b"HEAD")
        assert writes.transport.calls == []  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        writes.write(b"EVENT")

    assert run(steps) == [("write", (b"HEAD",)), ("write", (b"EVENT",))]


def test_only_the_write_after_hold_next_is_held() -> None:
    async def steps(writes: HeadWithBody) -> None:
        writes.write(b"A")
        writes.write(b"B")
        writes.hold_next()
        writes.write(b"HEAD")
        writes.write(b"BODY")
        writes.write(b"C")

    assert run(steps) == [
        ("write", (b"A",)),
        ("write", (b"B",)),
        ("writelines", (b"HEAD", b"BODY")),
        ("write", (b"C",)),
    ]


def test_closing_sends_what_is_held_first_and_aborting_drops_it() -> None:
    async def closing(writes: HeadWithBody) -> None:
        writes.hold_next()
        writes.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        writes.close()
        await asyncio.sleep(0)  # the flush scheduled for the held write finds nothing

    assert run(closing) == [("write", (b"HTTP/1.1 408 Request Timeout\r\n\r\n",)), ("close", ())]

    async def aborting(writes: HeadWithBody) -> None:
        writes.hold_next()
        writes.write(b"HEAD")
        writes.abort()
        await asyncio.sleep(0)

    assert run(aborting) == [("abort", ())]


def test_a_head_held_for_a_connection_lost_meanwhile_is_dropped() -> None:
    """uvloop refuses a write on a closed transport: the flush must not try one."""

    async def steps(writes: HeadWithBody) -> None:
        writes.hold_next()
        writes.write(b"HEAD")
        writes.transport.closed = True  # type: ignore[attr-defined]  # the peer went away
        await asyncio.sleep(0)

    assert run(steps) == []


def test_writelines_keeps_the_order() -> None:
    async def steps(writes: HeadWithBody) -> None:
        writes.hold_next()
        writes.write(b"HEAD")
        writes.writelines([b"X", b"Y"])

    assert run(steps) == [("write", (b"HEAD",)), ("writelines", (b"X", b"Y"))]


def test_what_it_does_not_change_is_the_transport_s() -> None:
    async def steps(writes: HeadWithBody) -> None:
        assert writes.get_write_buffer_size() == 7
        assert writes.is_closing() is False
        assert writes.get_extra_info("peername", "none") == "none"

    assert run(steps) == []


# ── a live server, counted by the kernel ──

TCP_INFO_DATA_SEGS = struct.Struct("=II")  # tcpi_data_segs_in, tcpi_data_segs_out
DATA_SEGS_OFFSET = 152  # in struct tcp_info (linux/tcp.h), since Linux 4.6


def data_segments(sock: socket.socket) -> tuple[int, int]:
    """(data segments received, data segments sent) on this connection so far."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < DATA_SEGS_OFFSET + TCP_INFO_DATA_SEGS.size:
        pytest.fail("this kernel's TCP_INFO has no data segment counters (Linux 4.6+)")
    received, sent = TCP_INFO_DATA_SEGS.unpack_from(info, DATA_SEGS_OFFSET)
    return received, sent


def read_response(sock: socket.socket, status: bytes = b"200", data: bytes = b"") -> tuple[bytes, bytes]:
    """One response's body, and the bytes read past it (a pipelined response's start)."""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int({name.lower(): value for name, value in fields.items()}[b"content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 " + status), head
    return body[:length], body[length:]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}", tmp_path)
    _, key = seed(settings)
    server = start_server(settings)
    yield server, key
    server.stop()


def connect(live: LiveServer) -> socket.socket:
    host, port = live.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_each_small_answer_reaches_the_client_in_one_segment(live: tuple[LiveServer, str]) -> None:
    requests = 20
    with connect(live[0]) as sock:
        request = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(request)
        read_response(sock)  # the first answer may come with the connection's own setup
        received_before, sent_before = data_segments(sock)
        for _ in range(requests):
            sock.sendall(request)
            assert b'"status"' in read_response(sock)[0]
        received, sent = data_segments(sock)
    assert sent - sent_before == requests  # the counters read as this test expects
    assert received - received_before == requests


def test_pipelined_requests_get_their_answers_whole_and_in_order(live: tuple[LiveServer, str]) -> None:
    """The second request's headers complete while the first is answered: nothing is held
    out of turn."""
    server, key = live
    invoke = (
        b"POST /v1/prompt/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + key.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n"
        + b'{"deployment": "no-such"}\n'
    )
    health = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(invoke + health + invoke)
        first, rest = read_response(sock, b"404")
        second, rest = read_response(sock, b"200", rest)
        third, rest = read_response(sock, b"404", rest)
    assert b"no-such" in first and b"no-such" in third and b'"status"' in second
    assert rest == b""


def test_expect_100_continue_still_asks_for_the_body(live: tuple[LiveServer, str]) -> None:
    server, key = live
    body = b'{"deployment": "no-such"}\n'
    head = (
        b"POST /v1/prompt/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + key.encode()
        + b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with connect(server) as sock:
        sock.sendall(head)
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer, _ = read_response(sock, b"404", interim.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"))
    assert b"no-such" in answer
