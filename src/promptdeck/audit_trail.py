"""Recording an admin action from a request: the admin API (surfaces/) and the console (web/)
both record, and neither may import the other, so the one helper lives here."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from promptdeck.engine.auth import Caller
from promptdeck.services import Services
from promptdeck.store.audit_log import Actor


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
