"""Change events between the worker processes of one `promptdeck serve --workers N`, without Redis.

Each worker binds a Unix datagram socket, named by its pid, in a directory the supervisor
created for this server (serving_workers.py). Every local event that makes a cache stale is sent
to every other socket there, in the same message the Redis bridge sends (engine/change_bridge.py
`encode`/`decode`); a worker publishes what it receives as *remote*, so it reaches caches only,
never webhooks (the worker that made the write announced it). A datagram between processes of
one host is not lost in flight; a socket whose worker is gone refuses it and is skipped, and a
worker whose queue is full gets the message again a little later (up to `BACKLOG` of them).
With PROMPTDECK_REDIS_URL set, the Redis bridge carries the events instead and this is unused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from pathlib import Path

from promptdeck.domain.change_events import ChangeEvent, ChangeFeed
from promptdeck.engine.change_bridge import decode, encode

log = logging.getLogger("promptdeck.local_change_bus")

SUFFIX = ".sock"
MAX_MESSAGE = 64 * 1024  # far above any message (a kind and a workspace id)
BACKLOG = 10_000  # messages held for a worker whose queue is full; beyond it they are dropped
RETRY_SECONDS = 0.02  # how soon a held message is sent again
QUIET_SECONDS = 10.0  # at most one warning per kind of trouble this often


class LocalChangeBus:
    """Forwards `feed`'s local events to this host's other workers and brings theirs in, once
    started (it must start inside the worker's event loop)."""

    def __init__(self, feed: ChangeFeed, directory: Path) -> None:
        self.feed = feed
        self.directory = directory
        self.origin = uuid.uuid4().hex
        self.path = directory / f"{os.getpid()}{SUFFIX}"
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: deque[tuple[str, bytes]] = deque()  # (peer, message) that found its queue full
        self._retry: asyncio.TimerHandle | None = None
        self._warned: dict[str, float] = {}
        feed.subscribe(self.forward, local_only=True)

    def peers(self) -> list[str]:
        """The other workers' sockets (a stale one, of a worker that has gone, is harmless)."""
        mine = self.path.name
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return [str(self.directory / name) for name in names if name.endswith(SUFFIX) and name != mine]

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a previous worker with this pid left it
        sock.bind(str(self.path))
        self._socket, self._loop = sock, asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._receive)

    async def stop(self) -> None:
        """Stop listening and remove this worker's socket; what is held for a slow peer is sent
        once more, then dropped."""
        sock, self._socket = self._socket, None
        if sock is None:
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._send_held(sock)
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def forward(self, event: ChangeEvent) -> None:
        """A local-only subscriber of the feed: send the event to every other worker."""
        if self._socket is None:
            return  # not started: a CLI command, or a single worker
        message = encode(event, self.origin)
        if message is None:
            return  # no other worker's cache needs it
        for peer in self.peers():
            self._send(self._socket, peer, message)

    def _send(self, sock: socket.socket, peer: str, message: bytes) -> bool:
        """Send one message; False if the peer's queue is full (it is then held)."""
        try:
            sock.sendto(message, peer)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # a worker that has stopped (or a stale socket file): nobody to tell
        except BlockingIOError:
            self._hold(peer, message)
            return False
        except OSError as exc:
            self._warn("send", "could not send a change event to worker %s: %s", peer, exc)
        return True

    def _hold(self, peer: str, message: bytes) -> None:
        if len(self._held) >= BACKLOG:
            self._warn("full", "a worker is not reading change events: one dropped for %s", peer)
            return
        self._held.append((peer, message))
        if self._retry is None and self._loop is not None:
            self._retry = self._loop.call_later(RETRY_SECONDS, self._retry_held)

    def _retry_held(self) -> None:
        self._retry = None
        if self._socket is not None:
            self._send_held(self._socket)

    def _send_held(self, sock: socket.socket) -> None:
        """Send the held messages in order; stop at the first that finds its queue full again."""
        while self._held:
            peer, message = self._held.popleft()
            if not self._send(sock, peer, message):
                self._held.rotate(1)  # `_send` held it again at the end: put it back in front
                return

    def _receive(self) -> None:
        sock = self._socket
        while sock is not None:
            try:
                message = sock.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            origin, event = decode(message)
            if origin != self.origin:
                self.feed.publish(event, remote=True)

    def _warn(self, what: str, text: str, *args: object) -> None:
        now = time.monotonic()
        if now >= self._warned.get(what, 0.0):
            self._warned[what] = now + QUIET_SECONDS
            log.warning(text, *args)
