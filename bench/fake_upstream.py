"""A very fast OpenAI-compatible upstream for the gateway benchmarks.

`POST /v1/chat/completions` answers instantly with a fixed completion: one JSON
body with usage, or (with `"stream": true`) an SSE stream of
`chat.completion.chunk`s — one per delta, the last carrying `finish_reason`,
then a usage chunk when `stream_options.include_usage` is set, then
`data: [DONE]`. It is a raw `asyncio.Protocol` HTTP/1.1 keep-alive server on
uvloop with httptools' C parser, so it costs a few tens of microseconds per
request and is never what a benchmark measures.

Run it alone: `python bench/fake_upstream.py --port 8401`; it prints
`listening on <port>` once ready (port 0 picks a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

import httptools
import orjson

T = TypeVar("T")

DELTAS = ("Hello", " from", " the", " fake", " upstream", ",", " quickly", ".")
PROMPT_TOKENS = 24
CREATED = 1_700_000_000
COMPLETION_ID = "chatcmpl-bench0000000000000000000000"


def _head(status: bytes, content_type: bytes, extra: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\n" + extra + b"Server: fake\r\n"
    )


class Answers:
    """Pre-built response bytes per (model, usage) so serving a request is a dict look-up and a write."""

    def __init__(self, deltas: tuple[str, ...]) -> None:
        self.deltas = deltas
        self._plain: dict[bytes, bytes] = {}
        self._stream: dict[tuple[bytes, bool], list[bytes]] = {}

    def usage(self) -> dict[str, Any]:
        n = len(self.deltas)
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": n,
            "total_tokens": PROMPT_TOKENS + n,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def plain(self, model: bytes) -> bytes:
        """The whole non-streaming HTTP response (head and body)."""
        answer = self._plain.get(model)
        if answer is None:
            body = orjson.dumps(
                {
                    "id": COMPLETION_ID,
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model.decode(),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(self.deltas)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": self.usage(),
                }
            )
            head = _head(b"200 OK", b"application/json", b"Content-Length: %d\r\n" % len(body))
            answer = head + b"\r\n" + body
            if len(self._plain) < 64:
                self._plain[model] = answer
        return answer

    def stream(self, model: bytes, include_usage: bool) -> list[bytes]:
        """The streaming response as separate writes: the head, one chunk per event, the last chunk."""
        key = (model, include_usage)
        parts = self._stream.get(key)
        if parts is None:
            name = model.decode()
            events: list[dict[str, Any]] = []
            for i, text in enumerate(self.deltas):
                delta: dict[str, Any] = {"content": text}
                if i == 0:  # the first chunk carries the role and the first token, as llama.cpp's server does
                    delta = {"role": "assistant", "content": text}
                last = i == len(self.deltas) - 1
                events.append(
                    {
                        "id": COMPLETION_ID,
                        "object": "chat.completion.chunk",
                        "created": CREATED,
                        "model": name,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if last else None}],
                    }
                )
            if include_usage:
                events.append(
                    {
                        "id": COMPLETION_ID,
                        "object": "chat.completion.chunk",
                        "created": CREATED,
                        "model": name,
                        "choices": [],
                        "usage": self.usage(),
                    }
                )
            datas = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
            head = _head(
                b"200 OK",
                b"text/event-stream",
                b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n",
            )
            parts = [head + b"\r\n"] + [b"%x\r\n%s\r\n" % (len(d), d) for d in datas] + [b"0\r\n\r\n"]
            if len(self._stream) < 64:
                self._stream[key] = parts
        return parts


def _error(status: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}})
    return _head(status, b"application/json", b"Content-Length: %d\r\n" % len(body)) + b"\r\n" + body


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection. httptools calls back as the request bytes are parsed;
    pipelined requests are answered in order."""

    def __init__(self, answers: Answers, delay: float) -> None:
        self.answers = answers
        self.delay = delay
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.trickling: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_error(b"400 Bad Request", "malformed HTTP request"))
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        keep_alive = self.parser.should_keep_alive()
        parts = self._answer()
        if self.delay and len(parts) > 1:
            task = asyncio.ensure_future(self._trickle(transport, parts, keep_alive))
            self.trickling.add(task)  # keep a reference until it is done
            task.add_done_callback(self.trickling.discard)
            return
        for part in parts:
            transport.write(part)
        if not keep_alive:
            transport.close()

    def _answer(self) -> list[bytes]:
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        if path != b"/v1/chat/completions" and path != b"/chat/completions":
            return [_error(b"404 Not Found", f"no route {path.decode(errors='replace')}")]
        if method != b"POST":
            return [_error(b"405 Method Not Allowed", "use POST")]
        try:
            request = orjson.loads(b"".join(self.body))
        except orjson.JSONDecodeError:
            return [_error(b"400 Bad Request", "the body is not JSON")]
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            return [_error(b"400 Bad Request", "messages: required")]
        model = str(request.get("model") or "fake-model").encode()
        if not request.get("stream"):
            return [self.answers.plain(model)]
        options = request.get("stream_options") or {}
        return self.answers.stream(model, bool(isinstance(options, dict) and options.get("include_usage")))

    async def _trickle(self, transport: asyncio.Transport, parts: list[bytes], keep_alive: bool) -> None:
        """With --delay-ms: the head at once, then one event per delay (a slow model)."""
        transport.write(parts[0])
        for part in parts[1:]:
            await asyncio.sleep(self.delay)
            if transport.is_closing():
                return
            transport.write(part)
        if not keep_alive:
            transport.close()


async def serve(host: str, port: int, deltas: int, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    words = tuple(DELTAS[i % len(DELTAS)] for i in range(deltas))
    answers = Answers(words)
    server = await loop.create_server(
        lambda: UpstreamProtocol(answers, delay_ms / 1000), host, port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def run_fast(coroutine: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is there (it is wherever promptdeck runs on Linux): several times faster."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    result: T = uvloop.run(coroutine)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8401, help="0 picks a free port (printed)")
    parser.add_argument("--deltas", type=int, default=8, help="content deltas per streamed answer")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause between streamed events")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("FAKE_UPSTREAM_ANY_HOST"):
        sys.exit("fake_upstream listens on loopback only")
    coroutine = serve(args.host, args.port, max(1, args.deltas), args.delay_ms)
    run_fast(coroutine)


if __name__ == "__main__":
    main()
