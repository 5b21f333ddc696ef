"""What every dialect shares: JSON bodies within a size and a nesting limit, errors rendered in
the dialect's own shape, keep-alive for quiet streams, and the security headers of every answer."""

from __future__ import annotations

import asyncio
import logging
import operator
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from itertools import accumulate, count
from typing import Any, TypeVar

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptdeck.domain import run_sessions
from promptdeck.domain.errors import PromptdeckError, ValidationFailed
from promptdeck.domain.schema_problems import Problem, problems
from promptdeck.http_errors import BodyTooLarge, ClientGone, as_error

log = logging.getLogger("promptdeck.http")

T = TypeVar("T")
ErrorRenderer = Callable[[PromptdeckError, Request], Response]


SESSION_HEADER = run_sessions.SESSION_HEADER.lower().encode()  # a run's session, in every dialect
_CALL_HEADERS = frozenset((SESSION_HEADER, b"traceparent", b"cache-control"))


def call_headers(request: Request, session_id: str | None = None) -> dict[str, Any]:
    """What a call's headers say about its run, the same in every dialect: its session (the
    header's, else `session_id`, the body's), the trace it joins, and whether it may be answered
    from the response cache. One pass over the raw headers; the values become `InvokeRequest`
    fields. A bad session header is refused (ValidationFailed, naming it)."""
    found: dict[str, Any] = {"session_id": session_id} if session_id else {}
    for name, value in request.scope["headers"]:
        if name not in _CALL_HEADERS:
            continue
        text = value.decode("latin-1").strip()
        if name == SESSION_HEADER:
            if given := run_sessions.header_session_id(text):
                found["session_id"] = given
        elif name == b"traceparent":
            found["traceparent"] = text
        else:  # Cache-Control: no-store asks for both (RFC 9111), no-cache for a fresh answer
            directives = text.lower()
            if "no-store" in directives:
                found["no_cache"] = found["no_store"] = True
            elif "no-cache" in directives:
                found["no_cache"] = True
    return found


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes, by Content-Length or as they stream in.
    The refusal surfaces inside the route, which renders it in its dialect."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        limit = self.limit
        too_big = declared is not None and declared.isdigit() and int(declared) > limit
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            if too_big:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


Header = tuple[bytes, bytes]
SECURITY_HEADERS: tuple[Header, ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
HTML_CSP: Header = (
    b"content-security-policy",
    b"default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
    b"base-uri 'self'; form-action 'self'",
)
# /docs serves Swagger UI from assets installed with promptdeck (fastapi-offline, under
# /docs/assets) and starts it with an inline script: allowed there only, never framed.
DOCS_CSP: Header = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
)
DOCS_PATHS = ("/docs",)


class SecurityHeaders:
    """ASGI middleware: every answer says not to sniff its type, not to be framed and to send
    this site's address only to itself; an HTML answer without a Content-Security-Policy of its
    own (the console's pages bring theirs) gets one. Headers a route set are kept. The headers
    are built once: the invoke hot path pays a scan of its few header names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(DOCS_PATHS)

        def send_with_headers(message: Message) -> Awaitable[None]:  # not async: no frame per event
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                given = {name.lower(): value for name, value in headers}
                headers += [header for header in SECURITY_HEADERS if header[0] not in given]
                html = given.get(b"content-type", b"").startswith(b"text/html")
                if html and b"content-security-policy" not in given:
                    headers.append(DOCS_CSP if docs else HTML_CSP)
                message["headers"] = headers
            return send(message)

        await self.app(scope, receive, send_with_headers)


MAX_JSON_DEPTH = 64
"""How deeply a request body's objects and arrays may nest. orjson parses 1,024 levels but writes
only 254, so a deeper value would be accepted and then fail where it is written (a 500, a run
never stored); no prompt input, tool schema or prompt file needs more than a few dozen."""
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_OPEN_AS_TWO = bytes.maketrans(b"[]", b"\x02\x00")
_LEAF_PASSES = 2  # wide bodies (arrays of small objects) shrink to almost nothing in two


def json_depth(raw: bytes) -> int:
    """How deeply the JSON in `raw` nests (exact for valid JSON), at C speed: brackets outside
    strings only; the innermost pairs are dropped a few times over, then the rest is summed."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_AS_SQUARE, _NOT_BRACKET)
    dropped = 0
    while brackets and dropped < _LEAF_PASSES:
        brackets, dropped = brackets.replace(b"[]", b""), dropped + 1
    # each opening bracket adds 2 and every bracket takes 1: the running sum is the depth
    return dropped + max(map(operator.sub, accumulate(brackets.translate(_OPEN_AS_TWO)), count(1)), default=0)


def check_json_depth(raw: bytes) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH. A body with fewer brackets than that
    cannot be, which two C-speed counts tell; only a larger one is measured."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ValidationFailed(
            f"the request body's JSON nests {depth} levels deep; at most {MAX_JSON_DEPTH} levels of "
            "objects and arrays are accepted: flatten it, or send deep data as a JSON string"
        )


Body = TypeVar("Body")
Refusal = Callable[[list[Problem], Any], PromptdeckError]


async def parse_body(request: Request, adapter: TypeAdapter[Body], refuse: Refusal) -> Body:
    """The request body validated by `adapter`'s model, or `refuse`'s error for every problem of
    it at once (with the decoded body, for messages that name things by what the body says).

    The bytes are decoded by orjson, then validated as Python values (the models are strict, so
    JSON types are not coerced): pydantic's own JSON parser would let through NaN, Infinity and
    integers past 64 bits inside free-form values (inputs, metadata), which orjson cannot write
    back where the run is rendered or stored. Both cost about a microsecond here."""
    raw = await request.body()
    if not raw:
        raise ValidationFailed("the request body is empty; send a JSON object")
    check_json_depth(raw)
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"the request body is not valid JSON: {exc}") from exc
    try:
        return adapter.validate_python(decoded)
    except ValidationError as exc:
        raise refuse(problems(exc), decoded) from None


def body_doc(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself: the model's JSON Schema as the
    required JSON request body, its `$defs` written in place (OpenAPI resolves `$ref`s against
    the whole document, which has no `$defs`)."""
    schema = adapter.json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return inline({**defs[ref.removeprefix("#/$defs/")], **rest})
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


class OrjsonRequest(Request):
    """A request whose JSON body FastAPI gets from orjson, as the dialects' bodies are parsed:
    the standard library's parser accepts what orjson cannot write back (integers past 64
    bits, lone surrogates), which then failed where it was rendered or stored. orjson's
    JSONDecodeError is the standard library's, so FastAPI reports a bad body as before."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


Gate = Callable[[Request], Awaitable[None]]


def dialect_route(render: ErrorRenderer, gate: Gate | None = None) -> type[APIRoute]:
    """A route class whose every error, expected or not, is answered in one dialect's shape.
    `gate` (e.g. the key check) runs before FastAPI reads and validates the body, and a body
    FastAPI parses is held to the same nesting limit as the dialects' own (`check_json_depth`)."""

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            parses_body = self.body_field is not None

            async def guarded(request: Request) -> Response:
                try:
                    if parses_body:
                        request = OrjsonRequest(request.scope, request.receive)
                    if gate is not None:
                        await gate(request)
                    if parses_body:  # read once: FastAPI parses the same cached bytes
                        check_json_depth(await request.body())
                    return await handler(request)
                except Exception as exc:
                    return render(as_error(exc), request)

            return guarded

    return DialectRoute


Endpoint = Callable[[Request], Awaitable[Response]]
HotRoute = tuple[Endpoint, ErrorRenderer]


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A hot route whose path has one parameter (`/prompt/{slug}/run`), matched as Starlette
    matches it by default (one whole segment: no `/`, not empty) by a prefix and a suffix, no
    regular expression. `path` is the template, as FastAPI's own route names itself in
    `scope["route"]` (what /metrics labels a request by)."""

    method: str
    path: str
    prefix: str
    param: str
    suffix: str
    hit: HotRoute

    @classmethod
    def of(cls, method: str, path: str, hit: HotRoute) -> PathTemplate:
        prefix, _, rest = path.partition("{")
        param, _, suffix = rest.partition("}")
        if not prefix.endswith("/") or "{" in suffix or (suffix and not suffix.startswith("/")):
            raise ValueError(f"{path}: a hot route's path has at most one parameter, a whole segment")
        return cls(method, path, prefix, param, suffix, hit)

    def value(self, method: str, path: str) -> str | None:
        """The parameter's value in `path`, or None if it is not this route's."""
        if method != self.method or not path.startswith(self.prefix) or not path.endswith(self.suffix):
            return None
        value = path[len(self.prefix) : len(path) - len(self.suffix)]
        return value if value and "/" not in value else None


class HotRoutes:
    """ASGI: serves the invoke endpoints directly, ahead of FastAPI's routing and dependency
    machinery (about 200 µs a request, measured in bench/). FastAPI still documents them in
    its OpenAPI and serves every other path (and method) of theirs; the endpoints are the same
    functions. A path may have one parameter (Traceport's `/prompt/{slug}/run`): the endpoint
    reads it from `request.path_params`, as on FastAPI's route."""

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], HotRoute]) -> None:
        self.app = app
        self.routes = {key: hit for key, hit in routes.items() if "{" not in key[1]}
        self.templates = tuple(PathTemplate.of(*key, hit) for key, hit in routes.items() if "{" in key[1])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if hit is None and self.templates and scope["type"] == "http":
            hit = self.templated(scope)
        if hit is None:
            await self.app(scope, receive, send)
            return
        endpoint, render = hit
        scope["app"] = self.app  # what `request.app` is on FastAPI's own routes
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as exc:
            response = render(as_error(exc), request)
        await response(scope, receive, send)

    def templated(self, scope: Scope) -> HotRoute | None:
        """The templated route `scope` asks for, its parameter put where FastAPI puts it."""
        method, path = scope["method"], scope["path"]
        for template in self.templates:
            value = template.value(method, path)
            if value is not None:
                scope["path_params"] = {template.param: value}
                scope["route"] = template
                return template.hit
        return None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


TEXT_MARK = "\u0000promptdeck text\u0000"  # stands for a streamed text while its template is made


def text_template(encode: Callable[[str], bytes]) -> tuple[bytes, bytes]:
    """The bytes `encode(text)` makes before and after the JSON-encoded text, for a text that
    comes last among the values a caller or an upstream chose: `before + dumps(text) + after`
    is then `encode(text)`, at a fraction of the CPU of building and encoding the whole object
    for each of a stream's deltas (docs/performance.md has the figures)."""
    before, _, after = encode(TEXT_MARK).rpartition(dumps(TEXT_MARK))
    return before, after


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it as soon as the caller hangs up: a non-streaming caller that
    leaves must not keep an upstream call (and its cost) running. Call once the body is read:
    the next `receive` then waits for nothing but the disconnect. `work` runs in this task; one
    watcher task cancels it (a second task and `asyncio.wait` cost ~0.1 ms a request)."""
    here = asyncio.current_task()
    assert here is not None
    watcher = asyncio.ensure_future(cancel_on_disconnect(request.receive, here))
    try:
        return await work
    except asyncio.CancelledError:
        if not (watcher.done() and not watcher.cancelled() and watcher.result()):
            raise  # cancelled from elsewhere (a shutdown): not ours to turn into an answer
        here.uncancel()
        log.info("%s %s: the caller went away before the answer; the run was cancelled",
                 request.method, request.url.path)  # fmt: skip
        raise ClientGone from None
    finally:
        watcher.cancel()


async def cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any]) -> bool:
    """Wait for the caller to hang up, then cancel `task`; True once it did."""
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()
    return True
