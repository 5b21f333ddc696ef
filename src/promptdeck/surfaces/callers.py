"""Who is calling: the API key on a request, checked against the in-memory key cache."""

from __future__ import annotations

from fastapi import Request

from promptdeck.engine.auth import Caller, bearer
from promptdeck.services import Services


def services(request: Request) -> Services:
    result: Services = request.app.state.services
    return result


async def bearer_caller(request: Request, scope: str) -> Caller:
    return await services(request).keys.caller(bearer(request.headers.get("authorization")), scope)


async def admin_caller(request: Request) -> Caller:
    """FastAPI dependency for the admin API."""
    return await bearer_caller(request, "admin")
