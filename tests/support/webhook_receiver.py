"""A real webhook receiver on loopback: an aiohttp server in its own thread that records every
POST (headers and exact body) and answers each with the next scripted status (200 once the
script is used up)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support.postgres import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    port: int
    statuses: list[int] = field(default_factory=list)  # answers, in turn
    seen: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Received(dict(request.headers), body, time.time()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200, text="ok")

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        """The first `count` requests, once they have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {len(self.seen)} requests, not {count}")
            time.sleep(0.02)
        return self.seen[:count]

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.seen if r.event["type"] == kind]


@contextmanager
def receiver() -> Iterator[Receiver]:
    hook = Receiver(free_port())
    app = web.Application()
    app.router.add_post("/hooks", hook._handle)
    runner = web.AppRunner(app, access_log=None)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", hook.port).start()
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the webhook receiver did not start"
    try:
        yield hook
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
