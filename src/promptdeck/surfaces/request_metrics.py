"""ASGI middleware counting and timing every HTTP request for /metrics.

A request is labelled by its route's template (`/api/runs/{run_id}`), never its path, so ids
and typos make no new series; a path no route matched is `(unmatched)`. The invoke endpoints
served ahead of FastAPI's routing (`HotRoutes`) are named by their fixed paths. A streamed
answer is timed to its end.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptdeck.engine.metric_series import CounterChild, HistogramChild
from promptdeck.engine.metrics_registry import Metrics

UNMATCHED = "(unmatched)"


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics, fixed_paths: Iterable[str]) -> None:
        self.app = app
        self.requests = metrics.http_requests
        self.duration = metrics.http_duration
        self.fixed_paths = frozenset(fixed_paths)
        # (method, route, status) → its counter and its histogram: one look-up a request
        self.children: dict[tuple[str, str, int], tuple[CounterChild, HistogramChild]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        def send_and_note(message: Message) -> Awaitable[None]:  # not async: no frame per event
            nonlocal status
            if not status and message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.note(scope, status or 500, time.perf_counter() - started)

    def note(self, scope: Scope, status: int, seconds: float) -> None:
        """One request's count and time. The access log calls it when both are on, so a request
        passes one middleware, not two (a wrapper costs a few µs a request, and a stream's every
        event goes through its `send`)."""
        method = scope["method"]
        if "route" in scope:
            route = self.route(scope)
        else:  # the invoke endpoints served ahead of routing, or a path no route matched
            route = scope["path"] if scope["path"] in self.fixed_paths else UNMATCHED
        key = (method, route, status)
        children = self.children.get(key)
        if children is None:  # as bounded as the series: methods, routes, statuses
            children = self.children[key] = (
                self.requests.child((method, route, str(status))),
                self.duration.child((method, route)),
            )
        children[0].inc()
        children[1].observe(seconds)

    def route(self, scope: Scope) -> str:
        matched = scope.get("route")
        path = getattr(matched, "path", None)
        if isinstance(path, str):
            return path or "/"
        return scope["path"] if scope["path"] in self.fixed_paths else UNMATCHED
