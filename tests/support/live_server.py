"""A real promptdeck server on loopback, run by uvicorn in a thread of the test process."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import uvicorn

from promptdeck.app import create_app
from promptdeck.config import Settings
from promptdeck.services import Services
from promptdeck.serving import server_config
from tests.support.postgres import free_port


@dataclass
class LiveServer:
    url: str
    settings: Settings
    services: Services
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        """Graceful stop, as on SIGTERM: the lifespan drains the run writer."""
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def call(self, coroutine_factory):  # type: ignore[no-untyped-def]
        """Run a coroutine on the server's own event loop (for reading its stores)."""
        future = asyncio.run_coroutine_threadsafe(coroutine_factory(), self.loop)
        return future.result(timeout=30)

    loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]


def start_server(settings: Settings) -> LiveServer:
    port = free_port()
    services = Services.build(settings)
    app = create_app(settings, services)
    # The server's own configuration, limits on slow clients included (promptdeck/serving.py).
    config = server_config(app, settings, "127.0.0.1", port, loop="asyncio", log_level="warning")
    server = uvicorn.Server(config)
    holder: dict[str, asyncio.AbstractEventLoop] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, daemon=True, name=f"promptdeck-{port}")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    live = LiveServer(f"http://127.0.0.1:{port}", settings, services, server, thread)
    live.loop = holder["loop"]
    return live
