"""A streamed answer that closes its run when the response ends, however it ends.

Starlette iterates a streaming body only once the headers are on their way; a caller that
hangs up before that never starts it, so nothing inside the body could record the run. The
response's own ASGI call always ends, so the run is closed there (engine/invocation.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from promptdeck.domain.answers import ResolvedRun
from promptdeck.domain.events import Event
from promptdeck.engine.invocation import Invocation
from promptdeck.surfaces.http import with_keepalive

Encoder = Callable[[ResolvedRun, AsyncIterator[Event | None]], AsyncIterator[bytes]]
"""A dialect's stream encoder: the run as resolved, and its events (`None`: a quiet interval,
for keep-alive bytes) to the bytes of the body. Pure: it reads nothing else."""


class RunResponse(StreamingResponse):
    def __init__(
        self,
        invocation: Invocation,
        encode: Encoder,
        keepalive: float,
        media_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        body = encode(invocation.run, with_keepalive(invocation.events(), keepalive))
        super().__init__(body, media_type=media_type, headers=headers)
        self.invocation = invocation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.invocation.close()
