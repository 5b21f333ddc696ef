"""A streamed answer, written straight to the ASGI `send`, that closes its run however it ends.

Starlette iterates a streaming body only once the headers are on their way; a caller that
hangs up before that never starts it, so nothing inside the body could record the run. The
response's own ASGI call always ends, so the run is closed there (engine/invocation.py).
The chunks that are ready together go out in one `send` (surfaces/ready_chunks.py).

Per stream, not per event: one task watches for the caller leaving, and one timer sends the
dialect's keep-alive bytes after a quiet interval. Each event then costs one pass through the
encoder and one `send`; Starlette's `StreamingResponse` spends an anyio task group per
response, and the keep-alive it replaced spent a task per event (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from promptdeck.domain.answers import ResolvedRun
from promptdeck.domain.events import Event
from promptdeck.engine.invocation import Invocation
from promptdeck.surfaces.http import cancel_on_disconnect
from promptdeck.surfaces.ready_chunks import ready_chunks

Encoder = Callable[[ResolvedRun, AsyncIterator[Event]], AsyncIterator[bytes]]
"""A dialect's stream encoder: the run as resolved, and its events, to the bytes of the body.
Pure: it reads nothing else."""

END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


class RunResponse(StreamingResponse):
    """The run's events through `encode`, with `ping` after every `keepalive` quiet seconds."""

    def __init__(
        self,
        invocation: Invocation,
        encode: Encoder,
        keepalive: float,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        *,
        ping: bytes,
    ) -> None:
        self.encoded = encode(invocation.run, invocation.events())
        super().__init__(self.encoded, media_type=media_type, headers=headers)
        self.invocation = invocation
        self.keepalive = keepalive
        self.ping = ping

    def start(self) -> Message:
        return {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        here = asyncio.current_task()
        assert here is not None
        left = asyncio.ensure_future(cancel_on_disconnect(receive, here))
        pacer = KeepAlive(send, self.ping, self.keepalive)
        body = self.encoded
        chunks = ready_chunks(body)
        try:
            await send(self.start())
            pacer.start()
            pacing = True
            async for chunk in chunks:
                if pacing and self.invocation.ended:  # the last bytes follow at once: no ping
                    pacing = False  # may come after them (a ping after `[DONE]` broke framing)
                    await pacer.stop()
                elif pacing:
                    pacer.sent()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await pacer.stop()
            await send(END)
        except asyncio.CancelledError:
            if not (left.done() and not left.cancelled() and left.result()):
                raise  # cancelled from elsewhere (a shutdown), not by the caller leaving
            here.uncancel()  # the caller left: the run is closed below as cancelled
        finally:
            left.cancel()
            await pacer.stop()
            await chunks.aclose()  # first: it may be inside a step of the body, which it ends
            aclose = getattr(body, "aclose", None)
            if aclose is not None:  # the body, if `chunks` never started
                await aclose()
            await self.invocation.close()


class KeepAlive:
    """Sends `ping` whenever `interval` seconds pass with nothing sent: one timer per stream,
    re-armed only when it fires, so an event costs a clock read. Its `send` runs beside the
    body's own; each ASGI message is written whole, so the two cannot interleave within one."""

    __slots__ = ("_handle", "_interval", "_last", "_loop", "_message", "_pinging", "_send")

    def __init__(self, send: Send, ping: bytes, interval: float) -> None:
        self._send = send
        self._message: Message = {"type": "http.response.body", "body": ping, "more_body": True}
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._last = self._loop.time()
        self._handle = self._loop.call_at(self._last + self._interval, self._due)

    def sent(self) -> None:
        self._last = self._loop.time()

    def _due(self) -> None:
        now = self._loop.time()
        if now - self._last >= self._interval and (self._pinging is None or self._pinging.done()):
            self._last = now
            self._pinging = asyncio.ensure_future(self._send(self._message))
            self._pinging.add_done_callback(_retrieved)
        self._handle = self._loop.call_at(self._last + self._interval, self._due)

    async def stop(self) -> None:
        """No ping after this returns (the body's last message may follow)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        pinging, self._pinging = self._pinging, None
        if pinging is not None and not pinging.done():
            with contextlib.suppress(Exception):
                await pinging


def _retrieved(task: asyncio.Future[None]) -> None:
    """A ping that failed (the caller gone) is not reported as an error never retrieved."""
    if not task.cancelled():
        task.exception()
