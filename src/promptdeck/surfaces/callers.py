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


OPEN_PATHS = ("/api/health",)


async def admin_gate(request: Request) -> None:
    """The admin API's key check, before the body is read: reading needs the `read` scope
    (or `admin`), every change needs `admin`."""
    if request.url.path in OPEN_PATHS:
        return
    renders = request.url.path.endswith("/payload")  # shows a request, changes nothing
    scope = "read" if request.method in ("GET", "HEAD") or renders else "admin"
    request.state.caller = await bearer_caller(request, scope)


def admin_caller(request: Request) -> Caller:
    """FastAPI dependency: the caller `admin_gate` admitted."""
    caller: Caller = request.state.caller
    return caller
