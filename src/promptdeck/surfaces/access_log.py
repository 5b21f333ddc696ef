"""The access log: one line per request on standard output, when it is answered in full —
method, path, status, duration, and for an invocation its deployment and run id.

A pure ASGI middleware, outermost, in place of uvicorn's access log (off in serving.py). It
reads nothing but the request's scope and the response's start message: no database, no
logging records; a request costs its one line and one write. An invoke handler tells it the
run by `log_run(request, invocation.run)` (a `ResolvedRun`, in `scope["state"]`);
without that, a run id sent as the `x-request-id` header (the OpenAI dialects) is logged."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TextIO

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptdeck.domain.answers import ResolvedRun

RUN_STATE = "run"  # the key in scope["state"] (request.state.run) `log_run` puts the run under
RUN_ID_HEADER = b"x-request-id"
CLIENT_CLOSED = 499  # nginx's status for a request whose client left before it was answered
LEVELS_THAT_LOG = frozenset({"info", "debug", "trace"})  # access lines are INFO


def log_run(request: Request, run: ResolvedRun) -> None:
    """Name the run this request started on its access line (every invoke handler calls it)."""
    request.scope.setdefault("state", {})[RUN_STATE] = run


def access_log_wanted(level: str) -> bool:
    """Whether PROMPTDECK_LOG_LEVEL shows access lines (above `info` the middleware is left out)."""
    return level.lower() in LEVELS_THAT_LOG


class AccessLog:
    """ASGI middleware: after each HTTP request, one line on standard output (`json_lines`: one
    JSON object). A streamed answer is logged when its stream ends; its duration includes it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        json_lines: bool = False,
        stream: TextIO | None = None,
        also: Callable[[Scope, int, float], None] | None = None,
    ) -> None:
        self.app = app
        self.also = also  # called with (scope, status, seconds) after each request: the metrics
        self.line = json_line if json_lines else text_line
        self.stream = stream or sys.stdout  # as a logging handler does: the stdout of the start
        self.fd = _file_descriptor(self.stream)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        run_id: bytes | None = None

        def send_and_note(message: Message) -> Awaitable[None]:  # not async: no frame per event
            nonlocal status, run_id
            if not status and message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == RUN_ID_HEADER:
                        run_id = value
            return send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except ClientDisconnect:
            status = status or CLIENT_CLOSED
            raise
        except BaseException:
            status = status or 500  # what uvicorn answers for it
            raise
        finally:
            state = scope.get("state")
            run: ResolvedRun | None = state.get(RUN_STATE) if state else None
            deployment = run.deployment if run is not None else None
            request_id = run.request_id if run is not None else run_id.decode() if run_id else None
            seconds = time.perf_counter() - started
            if self.also is not None:
                self.also(scope, status or 500, seconds)
            line = self.line(scope, status or 500, seconds * 1000, deployment, request_id)
            try:
                if self.fd is not None:  # one system call, none of the text layers' work
                    os.write(self.fd, line.encode())
                else:
                    self.stream.write(line)
                    self.stream.flush()
            except (OSError, ValueError):  # stdout closed or a broken pipe: the request goes on
                pass


def _file_descriptor(stream: TextIO) -> int | None:
    """The stream's file descriptor, when it has one, after what it holds is flushed: lines are
    then written to it directly (about 10 µs a request less than through the text layers)."""
    try:
        stream.flush()
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # e.g. a StringIO, or a closed stdout
        return None


def text_line(
    scope: Scope, status: int, duration_ms: float, deployment: str | None, run_id: str | None
) -> str:
    """`INFO:     127.0.0.1:50312 POST /v1/prompt/invoke 200 41.2ms deployment=fast run=req_…`,
    aligned with uvicorn's own lines."""
    client = scope.get("client")
    who = f"{client[0]}:{client[1]}" if client else "-"
    tail = ""
    if deployment:
        tail += f" deployment={deployment}"
    if run_id:
        tail += f" run={run_id}"
    return f"INFO:     {who} {scope['method']} {shown_path(scope)} {status} {duration_ms:.1f}ms{tail}\n"


_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def shown_path(scope: Scope) -> str:
    """The path as the client sent it, still percent-encoded: a `%0A` in it cannot start a
    forged line of the log, as the decoded path's newline would."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.decode("ascii", "backslashreplace").translate(_CONTROL)
    return str(scope["path"]).translate(_CONTROL)


def json_line(
    scope: Scope, status: int, duration_ms: float, deployment: str | None, run_id: str | None
) -> str:
    """One JSON object: time, level, logger, client, method, path, status, duration_ms,
    deployment and run_id (null when the request ran no prompt)."""
    client = scope.get("client")
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "info",
        "logger": "promptdeck.access",
        "client": f"{client[0]}:{client[1]}" if client else None,
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(duration_ms, 1),
        "deployment": deployment,
        "run_id": run_id,
    }
    return orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE).decode()
