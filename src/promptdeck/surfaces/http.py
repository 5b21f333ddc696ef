"""What every dialect shares: JSON bodies within a size limit, errors rendered in the
dialect's own shape, and keep-alive for quiet streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import orjson
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptdeck.domain.errors import PayloadTooLarge, PromptdeckError, ValidationFailed

log = logging.getLogger("promptdeck.http")

T = TypeVar("T")
ErrorRenderer = Callable[[PromptdeckError, Request], Response]


class BodyTooLarge(HTTPException):
    """Raised while the body is read; an HTTPException so FastAPI's own body parsing lets it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


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


async def json_body(request: Request) -> Any:
    """The request body as JSON; a clear validation error when it is not JSON."""
    raw = await request.body()
    if not raw:
        raise ValidationFailed("the request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"the request body is not valid JSON: {exc}") from exc


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed("the request body must be a JSON object")
    return body


def as_error(exc: Exception) -> PromptdeckError:
    """Any exception a route lets out, as a PromptdeckError with a message a person can act on."""
    if isinstance(exc, PromptdeckError):
        return exc
    if isinstance(exc, BodyTooLarge):
        return PayloadTooLarge(str(exc.detail))
    if isinstance(exc, RequestValidationError):
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return ValidationFailed("the request body is not valid JSON")
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        ]
        return ValidationFailed("invalid request: " + "; ".join(problems), details=problems)
    if isinstance(exc, StarletteHTTPException):  # FastAPI's and the router's own (unknown path, method)
        if exc.status_code == 400 and isinstance(exc.__cause__, BodyTooLarge):
            return as_error(exc.__cause__)
        error = PromptdeckError(str(exc.detail))
        error.code = {400: "validation_error", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "bad_request"
        )
        return error
    log.exception("unexpected error", exc_info=exc)
    return PromptdeckError("promptdeck hit an internal error; the run, if any, was logged")


Gate = Callable[[Request], Awaitable[None]]


def dialect_route(render: ErrorRenderer, gate: Gate | None = None) -> type[APIRoute]:
    """A route class whose every error, expected or not, is answered in one dialect's shape.
    `gate` (e.g. the key check) runs before FastAPI reads and validates the body."""

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    if gate is not None:
                        await gate(request)
                    return await handler(request)
                except Exception as exc:
                    return render(as_error(exc), request)

            return guarded

    return DialectRoute


Endpoint = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """ASGI: serves the invoke endpoints directly, ahead of FastAPI's routing and dependency
    machinery (about 200 µs a request, measured in bench/). FastAPI still documents them in
    its OpenAPI and serves every other path; the endpoints are the same functions."""

    def __init__(
        self, app: ASGIApp, routes: Mapping[tuple[str, str], tuple[Endpoint, ErrorRenderer]]
    ) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
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


async def with_keepalive(events: AsyncIterator[T], interval: float) -> AsyncIterator[T | None]:
    """Yield the events, and `None` whenever `interval` seconds pass without one
    (the caller turns `None` into its dialect's keep-alive bytes)."""
    iterator = events.__aiter__()
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait((pending,), timeout=interval)
            if not done:
                yield None
                continue
            finished, pending = pending, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            # Let it wind down (close the upstream call, log the run) even when this task is
            # cancelled again meanwhile, as a cancel scope does: `await pending` would pass each
            # further cancellation on to it and cut its own cleanup short; `wait` does not.
            while not pending.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait((pending,))
            if not pending.cancelled():
                pending.exception()  # retrieved, so it is not reported as never retrieved
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
