"""A response's head leaves with its body: one system call for a whole small answer.

uvicorn writes a response's head when the app sends `http.response.start` and its body when the
app sends `http.response.body`: two `send` calls for every JSON answer, back to back. A `send`
on a TCP socket is the costliest step of a small response (~4 µs on loopback, where it also
delivers the segment), and the client wakes twice.

`HeadWithBody` stands between uvicorn's protocol and the socket's transport. Told that a
request's headers are complete, it holds the next write (the response's head) until the write
after it, and sends the two in one `writelines`; if nothing follows before the event loop
turns (a stream whose first event is not ready yet), the head goes out alone then, as before.
Every other write goes straight through, and `close` sends what is held first, so nothing is
reordered, lost or delayed past the current turn of the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any


class HeadWithBody:
    """The transport uvicorn's protocol and its request cycles write to (module docstring)."""

    __slots__ = ("_held", "_hold_next", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._hold_next = False

    def hold_next(self) -> None:
        """The next write is a response's head: hold it for the body's first piece."""
        self._hold_next = True

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.writelines((held, data))
        elif self._hold_next:
            self._hold_next = False
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Send what is held, if anything and if the connection is still there (it may have
        been lost in the same turn of the loop: the head is then for nobody)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def writelines(self, pieces: Any) -> None:
        self.flush()
        self.transport.writelines(pieces)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        """Anything else the transport does (`set_protocol`, `get_protocol`, write buffer
        limits), as it does it."""
        return getattr(self.transport, name)
