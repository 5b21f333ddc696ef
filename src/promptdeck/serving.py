"""How promptdeck is served: uvicorn with limits on slow, idle and surplus clients.

uvicorn has a keep-alive timeout and a concurrency limit, but no deadline for a request's
headers or body: a client that sends them a byte at a time holds its connection (and a file
descriptor) for as long as it likes. `GuardedHttpProtocol` adds those deadlines to uvicorn's
httptools protocol. `server_config` is the one place the limits are set, used by
`promptdeck serve` and by the tests' live server alike; docs/deploy.md explains how to size them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import logging
import socket
import sys
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from promptdeck.config import Settings
from promptdeck.serving_writes import HeadWithBody
from promptdeck.surfaces.callers import OPEN_PATHS

log = logging.getLogger("promptdeck.serving")

SPARE_FILES = 64  # descriptors beside the connections: database, logs, the listening socket
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start (uvicorn.main)
UNLIMITED_PATHS = frozenset(path.encode() for path in OPEN_PATHS)  # health checks answer at the limit
HEADERS, BODY = "headers", "body"


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for slow clients. A request's headers must
    be complete `header_timeout` seconds after its first byte (or after the connection opened);
    its body may pause at most `body_timeout` seconds between pieces, and must keep up
    `body_min_rate` bytes a second after its first `body_timeout` seconds. A client past a
    deadline gets a 408 (when nothing else is being answered on its connection) and is closed.
    One timer per connection, re-armed only when it fires early, keeps this off the hot path."""

    header_timeout = 10.0
    body_timeout = 20.0
    body_min_rate = 500.0
    _writes: HeadWithBody  # the transport as uvicorn writes to it (serving_writes.py)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: str | None = None  # HEADERS or BODY: what the client owes, under a deadline
        self._began = False  # a byte of the awaited request has arrived
        self._since = 0.0  # when the wait began
        self._last_piece = 0.0  # when the last piece of the body arrived
        self._received = 0  # body bytes so far
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # ── uvicorn's callbacks, each extended by a line or two ──

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._writes = HeadWithBody(transport, self.loop)
        super().connection_made(cast(asyncio.Transport, self._writes))
        self._wait(HEADERS)

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._waiting != HEADERS:  # a later request on a kept-alive connection: a new deadline
            self._wait(HEADERS)
        self._began = True

    def on_headers_complete(self) -> None:
        limit = self.limit_concurrency
        if limit is not None and self.url.split(b"?", 1)[0] in UNLIMITED_PATHS:
            self.limit_concurrency = None  # uvicorn's own check reads this attribute
        previous = self.cycle
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = limit
        if self.cycle is not previous and (previous is None or previous.response_complete):
            self._writes.hold_next()  # a response starts now: its head waits for its body
        self._wait(BODY)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._last_piece = self.loop.time()
        self._received += len(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._waiting = None

    # ── deadlines ──

    def _wait(self, what: str) -> None:
        now = self.loop.time()
        self._waiting, self._began = what, False
        self._since = self._last_piece = now
        self._received = 0
        self._arm(now + (self.header_timeout if what == HEADERS else self.body_timeout))

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_at <= when:
                return  # it fires first, and re-arms itself if the deadline has moved on
            self._timer.cancel()
        self._timer, self._timer_at = self.loop.call_at(when, self._check), when

    def _deadline(self) -> float:
        if self._waiting == HEADERS:
            return self._since + self.header_timeout
        pause = self._last_piece + self.body_timeout
        if self.body_min_rate <= 0:
            return pause
        return min(pause, self._since + self.body_timeout + self._received / self.body_min_rate)

    def _check(self) -> None:
        self._timer = None
        if self._waiting is None or self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # nothing owed, closing already, or upgraded to another protocol
        now = self.loop.time()
        if self._waiting == BODY and self.flow.read_paused:  # the app is behind, not the client
            self._since = self._last_piece = now
            self._received = 0
        deadline = self._deadline()
        if now < deadline:
            self._arm(deadline)
        else:
            self._expire()

    def _expire(self) -> None:
        cycle = self.cycle
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        if self._waiting == HEADERS:
            idle = cycle is None or cycle.response_complete
            if self._began:
                log.info("%s: request headers incomplete after %g s; closed", client, self.header_timeout)
                if idle:
                    self._refuse(f"the request headers did not arrive within {self.header_timeout:g} s")
            else:  # connected and sent nothing (a browser's pre-connection, say): no answer, no log
                log.debug("%s: no request within %g s; closed", client, self.header_timeout)
        else:
            log.info("%s: request body stalled or too slow; closed", client)
            if cycle is not None and not cycle.response_started:
                self._refuse("the request body stalled or came too slowly")
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() now says so, and its send() writes nothing
                cycle.message_event.set()
        self._waiting = None
        self.transport.close()

    def _refuse(self, message: str) -> None:
        body = message.encode()
        head = [STATUS_LINE[408]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: text/plain; charset=utf-8\r\n", b"content-length: %d\r\n" % len(body)]
        head += [b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)


def guarded_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """The protocol class with this server's deadlines (uvicorn takes a class, not an instance)."""

    class Configured(GuardedHttpProtocol):
        header_timeout = settings.header_timeout
        body_timeout = settings.body_timeout
        body_min_rate = settings.body_min_rate

    return Configured


class QuietDisconnects:
    """ASGI: a client that leaves while its body is being read is logged in one line, not as an
    'Exception in ASGI application' traceback (the dialect routes already answer it themselves)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.info("%s %s: the client went away while sending its request", scope["method"], scope["path"])


class JsonLogFormatter(logging.Formatter):
    """PROMPTDECK_LOG_FORMAT=json: each log line one JSON object, with the access log's keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def logging_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging, with promptdeck's own loggers printed beside its error log: otherwise
    their INFO lines (a client that left, a slow client closed) are shown nowhere. uvicorn's
    access log stays off (`server_config`): surfaces/access_log.py writes one line a request."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["promptdeck"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    if log_format == "json":
        config["formatters"]["default"] = {"()": JsonLogFormatter}
    return config


def server_config(
    app: ASGIApp,
    settings: Settings,
    host: str,
    port: int,
    *,
    loop: str,
    log_level: str,
    log_config: dict[str, Any] | None = None,
) -> uvicorn.Config:
    """uvicorn's configuration with promptdeck's limits (docs/deploy.md). Without `log_config`,
    uvicorn's own (the tests' live server: pytest captures promptdeck's loggers)."""
    return uvicorn.Config(
        QuietDisconnects(app),
        host=host,
        port=port,
        loop=loop,
        lifespan="on",  # a failed start (database, run writer) stops the server instead of hiding
        http=guarded_protocol(settings),
        access_log=False,  # promptdeck's own (surfaces/access_log.py): one line a request
        log_level=log_level,
        timeout_keep_alive=settings.idle_timeout,
        limit_concurrency=settings.max_connections or None,
        backlog=settings.backlog,
        timeout_graceful_shutdown=30,
        log_config=log_config or LOGGING_CONFIG,
    )


def run(config: uvicorn.Config, sockets: list[socket.socket] | None = None) -> None:
    """Serve until stopped, as `uvicorn.run` would: Ctrl-C after the graceful shutdown is a clean
    exit, and a server that never started exits with uvicorn's startup-failure status. `sockets`:
    bound sockets to listen on instead of the config's address (a worker's, serving_workers.py)."""
    server = uvicorn.Server(config)
    tune_garbage_collector()
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


# Container allocations (net of frees) between two young-generation collections; CPython's
# default is 700. Calls allocate many short-lived objects, nearly all freed by reference counting,
# so young collections at 700 found little and ran hundreds of times a second.
YOUNG_GC_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Before serving: the ~200,000 objects of the imported modules and the built app are
    moved out of the collector's reach (`gc.freeze`: they live as long as the process), and
    young collections run less often. Measured with bench/gateway_overhead.py: the cyclic
    collector took ~280 µs a call on average (each full collection walked every object, ~340 ms,
    a pause every caller felt), ~6 µs after (docs/performance.md, "Garbage collection")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def raise_open_file_limit(max_connections: int) -> int:
    """Raise this process's soft limit on open files to its hard limit (the default soft limit,
    often 1,024, is what a few hundred slow clients exhaust) and warn when it is still short of
    what `max_connections` connections, each with an upstream call, need. Returns the limit."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below an unlimited hard limit
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    needed = 2 * max_connections + SPARE_FILES
    if max_connections and soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "the open-file limit is %d, short of the %d that PROMPTDECK_MAX_CONNECTIONS=%d may need: "
            "raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower PROMPTDECK_MAX_CONNECTIONS",
            soft,
            needed,
            max_connections,
        )
    return int(soft)
