"""Who is calling: the API key on a request, checked against the in-memory key cache, or on
the admin API a console member's session cookie."""

from __future__ import annotations

from fastapi import Request

from promptdeck.domain.errors import Forbidden, Unauthorized
from promptdeck.domain.members import role_allows
from promptdeck.engine.auth import Caller, bearer
from promptdeck.sessions import CSRF_HEADER, CSRF_REFUSED, SESSION_COOKIE, current_session, tokens_match
from promptdeck.sessions import services as services  # the dialects import it from here


async def bearer_caller(request: Request, scope: str) -> Caller:
    return await services(request).keys.caller(bearer(request.headers.get("authorization")), scope)


OPEN_PATHS = ("/api/health", "/healthz", "/readyz")  # answered without a key, even at the connection limit
# Admin API paths whose every use needs the owner role when the caller is a console member.
OWNER_PATHS = (
    "/api/keys",
    "/api/providers",
    "/api/prices",
    "/api/settings",
    "/api/import",
    "/api/members",
    "/api/webhooks",
    "/api/limits",
    "/api/budgets",
)
SESSION_EXPIRED = "your console session has expired or was ended; sign in again"


def member_role_needed(path: str, reading: bool) -> str:
    """The console role an admin API request needs: reading is for viewers (API keys' names:
    owners), changes to prompts, deployments and feedback for editors, the rest for owners."""
    owners_only = any(path == p or path.startswith(p + "/") for p in OWNER_PATHS)
    if reading:
        return "owner" if path == "/api/keys" else "viewer"
    return "owner" if owners_only else "editor"


async def admin_gate(request: Request) -> None:
    """The admin API's check, before the body is read. With an API key: reading needs the
    `read` scope (or `admin`), every change `admin`. Without an Authorization header but with
    a console session cookie: the member's role (`member_role_needed`), and on every change
    the session's CSRF token in X-CSRF-Token."""
    if request.url.path in OPEN_PATHS:
        return
    reading = request.method in ("GET", "HEAD") or request.url.path.endswith("/payload")  # renders only
    if "authorization" not in request.headers and SESSION_COOKIE in request.cookies:
        request.state.caller = await member_caller(request, reading)
        return
    request.state.caller = await bearer_caller(request, "read" if reading else "admin")


async def member_caller(request: Request, reading: bool) -> Caller:
    session = await current_session(request)
    if session is None:
        raise Unauthorized(SESSION_EXPIRED)
    member = session.member
    if member.must_change_password:
        raise Forbidden("change your one-time password at /change-password first")
    if not reading and not tokens_match(session.csrf_token, request.headers.get(CSRF_HEADER)):
        raise Forbidden(f"{CSRF_REFUSED} (send the X-CSRF-Token header)")
    needed = member_role_needed(request.url.path, reading)
    if not role_allows(member.role, needed):
        raise Forbidden(
            f"{request.method} {request.url.path} needs the {needed} role; you are signed in as {member.role}"
        )
    return Caller.member(member.workspace_id, member.email, member.role, instance_admin=member.instance_admin)


def admin_caller(request: Request) -> Caller:
    """FastAPI dependency: the caller `admin_gate` admitted."""
    caller: Caller = request.state.caller
    return caller
