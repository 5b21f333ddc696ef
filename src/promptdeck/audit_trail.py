"""Recording an admin action from a request: the admin API (surfaces/) and the console (web/)
both record, and neither may import the other, so the one helper lives here. Beside it, the
middleware that tells writes deep in a store (a variant move) where their request came from."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from promptdeck.engine.auth import Caller
from promptdeck.services import Services
from promptdeck.store.audit_log import Actor, Origin, request_origin


def request_actor(request: Request, caller: Caller) -> Actor:
    """Who is calling, and from where (the client's address as uvicorn saw it: behind a proxy
    listed in FORWARDED_ALLOW_IPS, the forwarded one)."""
    address = request.client.host if request.client else ""
    return Actor(caller.actor, caller.key_id, address, request.headers.get("user-agent", ""))


async def audit(
    request: Request,
    caller: Caller,
    action: str,
    target_type: str,
    target_id: str,
    before: Any = None,
    after: Any = None,
    *,
    workspace_id: str | None = "",
) -> None:
    """Record one admin action in the caller's workspace (or `workspace_id`; None: the instance)."""
    services: Services = request.app.state.services
    where = caller.workspace_id if workspace_id == "" else workspace_id
    await services.audit.record(
        where, request_actor(request, caller), action, target_type, target_id, before, after
    )


async def stored_credential(services: Services, workspace_id: str, provider: str) -> dict[str, Any] | None:
    """A provider credential as the audit log records it: provider, base URL and when it was
    stored. Nothing of the secret, not even its end: a short key's last characters are most of it."""
    return next((c for c in await services.credentials.list(workspace_id) if c["provider"] == provider), None)


async def price_override(services: Services, workspace_id: str, model: str) -> dict[str, Any] | None:
    """A model's price override as it stands, for the before and after of a price change."""
    return next((p for p in await services.prices.list(workspace_id) if p["model"] == model), None)


def without_secret(endpoint: dict[str, Any]) -> dict[str, Any]:
    """A webhook endpoint as recorded: the answers that show its signing secret once drop it."""
    return {k: v for k, v in endpoint.items() if k != "secret"}


class RequestOrigin:
    """ASGI middleware: each HTTP request's client address and user agent (and, once the admin
    gate checked it, its key) in `store.audit_log.request_origin` while it is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        agent = next((v for k, v in scope.get("headers", ()) if k == b"user-agent"), b"")
        state: dict[str, Any] = scope.setdefault("state", {})  # what `request.state` writes to

        def key_id() -> str | None:
            caller = state.get("caller")  # set by the admin gate (surfaces/callers.py)
            return caller.key_id if isinstance(caller, Caller) else None

        token = request_origin.set(Origin(client[0] if client else "", agent.decode("latin-1"), key_id))
        try:
            await self.app(scope, receive, send)
        finally:
            request_origin.reset(token)
