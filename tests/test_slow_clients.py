"""Slow clients against a live server with short limits (promptdeck/serving.py): headers or a
body sent a byte at a time are cut off at their deadline with a 408, clients that leave
mid-body cost one log line and no traceback, idle keep-alive connections close, and the
health check answers throughout, even past the connection limit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_settings, seed
from tests.support.live_server import LiveServer, start_server

TIMEOUT = 1.0  # header and body deadlines of the server under test
SLACK = 1.5  # how late past its deadline a slow client may still be cut off
SLOW = 50  # slow connections held at once
DRIP = 0.1  # seconds between the bytes a slow client sends
MAX_CONNECTIONS = 40  # under SLOW: the limit is reached while they are held


@dataclass
class Server:
    live: LiveServer
    key: str
    port: int


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}",
        tmp_path,
        header_timeout=TIMEOUT,
        body_timeout=TIMEOUT,
        idle_timeout=1,
        max_connections=MAX_CONNECTIONS,
    )
    _, key = seed(settings)
    live = start_server(settings)
    yield Server(live, key, int(live.url.rsplit(":", 1)[1]))
    live.stop()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Everything promptdeck, uvicorn and asyncio log meanwhile, at INFO and above."""
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("promptdeck", "uvicorn", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler.records
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def invoke_head(key: str, length: int) -> bytes:
    return (
        f"POST /v1/prompt/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def drip(port: int, first: bytes, then: bytes) -> tuple[float, bytes]:
    """Send `first`, then `then` a byte every DRIP seconds until the server closes the
    connection; returns (seconds until it did, what it answered). A byte that crosses the
    server's close makes it reset the connection, which may discard its answer: then b"RESET"."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    answer = asyncio.ensure_future(reader.read())  # everything, up to the server's close
    try:
        for byte in then:
            if answer.done():
                break
            await asyncio.sleep(DRIP)
            writer.write(bytes([byte]))
        data = await asyncio.wait_for(answer, TIMEOUT + SLACK)
    except ConnectionError:
        data = b"RESET"
    finally:
        answer.cancel()
        writer.close()
    return time.monotonic() - started, data


async def leave_mid_body(port: int, key: str) -> None:
    """Start a body, then hang up: the client that left in the original report."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(invoke_head(key, 1000) + b'{"deployment": "summ')
    await asyncio.sleep(0.3)
    writer.close()


async def status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readline(), 5)
        return int(head.split()[1])
    finally:
        writer.close()


async def test_slow_clients_are_cut_off_while_health_checks_answer(
    server: Server, records: list[logging.LogRecord]
) -> None:
    port, key = server.port, server.key
    headers = b"GET /api/prompts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    body = b'{"deployment": "summarize", "inputs": {"text": "' + b"x" * 200
    # Bodies first, while under the connection limit; then headers, which take it past.
    tasks = [asyncio.ensure_future(drip(port, invoke_head(key, 1000), body)) for _ in range(SLOW // 2)]
    leavers = [asyncio.ensure_future(leave_mid_body(port, key)) for _ in range(10)]
    await asyncio.sleep(0.1)
    tasks += [asyncio.ensure_future(drip(port, headers[:20], headers[20:])) for _ in range(SLOW // 2)]

    await asyncio.sleep(0.3)  # all connected and trickling, the leavers gone: over the limit
    health, limited = [], await status(port, "/api/prompts")
    while not all(task.done() for task in tasks):
        health.append(await status(port, "/api/health"))
        await asyncio.sleep(0.1)
    await asyncio.gather(*leavers)
    results = [task.result() for task in tasks]

    assert limited == 503  # past the connection limit, requests are shed...
    assert health and set(health) == {200}  # ...but not the health check
    for seconds, answer in results:
        assert seconds < TIMEOUT + SLACK
        assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"RESET", answer[:100]
    assert sum(answer.startswith(b"HTTP/1.1 408 ") for _, answer in results) > SLOW // 2
    await asyncio.sleep(0.2)  # the leavers' requests end on the server's loop
    assert await status(port, "/api/prompts") == 401  # below the limit again
    # Where a disconnect's traceback would come from: the dialects' error handling, uvicorn's
    # "Exception in ASGI application", asyncio's "exception was never retrieved".
    noted = [
        r
        for r in records
        if r.name.startswith(("promptdeck.http", "promptdeck.serving", "uvicorn", "asyncio"))
    ]
    tracebacks = [r for r in noted if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    went_away = [r for r in records if "went away while sending" in r.getMessage()]
    assert went_away and all(r.levelno == logging.INFO for r in went_away)


async def test_a_body_that_keeps_coming_is_not_cut_off(server: Server) -> None:
    """Longer in all than the body deadline, but never pausing that long, nor slower than the
    minimum rate: answered (404: no such deployment), not refused."""
    body = b'{"deployment": "no-such-deployment", "inputs": {"text": "' + b"x" * 2900 + b'"}}'
    pieces = [body[start : start + 600] for start in range(0, len(body), 600)]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(invoke_head(server.key, len(body)))
        for piece in pieces:  # 5 pieces 0.3 s apart: 1.5 s, at 2 kB/s
            await asyncio.sleep(0.3)
            writer.write(piece)
        head = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert len(pieces) * 0.3 > TIMEOUT
    assert head.split()[1] == b"404", head


async def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        while await asyncio.wait_for(reader.read(4096), 1 + SLACK + 1):
            pass  # the rest of the answer, then the server's close
        assert time.monotonic() - started < 1 + SLACK
    finally:
        writer.close()
