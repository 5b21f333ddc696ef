"""Console sessions over HTTP: the session cookie, CSRF tokens, and the role dependencies
page routes declare (`Member`, `Editor`, `Owner`).

The cookie `promptdeck_session` holds a random token; the database keeps its SHA-256
(store/console_sessions.py); what the admin API checks too (the cookie's and header's names,
the live session, the token check) is promptdeck/sessions.py. The cookie is HttpOnly,
SameSite=Lax, Path=/, and Secure when the request came over https (uvicorn sets the scheme
from X-Forwarded-Proto only for proxies listed in FORWARDED_ALLOW_IPS, 127.0.0.1 by default).

CSRF: a synchronizer token kept with the session goes into every form (`csrf_token`) and
every `fetch` (`X-CSRF-Token`). Forms shown before sign-in (sign-in, accept an invite)
carry the value of a `promptdeck_form_csrf` cookie instead (double submit).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request, Response
from starlette.datastructures import FormData

from promptdeck.domain.errors import Forbidden, PromptdeckError, Unauthorized
from promptdeck.domain.members import SESSION_LIFETIME, role_allows
from promptdeck.engine.auth import Caller
from promptdeck.sessions import CSRF_HEADER, CSRF_REFUSED, SESSION_COOKIE, tokens_match
from promptdeck.sessions import current_session as current_session  # pages import these from here
from promptdeck.sessions import services as services
from promptdeck.store.console_sessions import Session

FORM_CSRF_COOKIE = "promptdeck_form_csrf"
CSRF_FIELD = "csrf_token"
# Paths a member who must change their one-time password may still reach.
BEFORE_PASSWORD_CHANGE = ("/change-password", "/sign-out")


def caller_of(session: Session) -> Caller:
    """The signed-in member as the `Caller` a console action is made (and audited) as."""
    member = session.member
    return Caller.member(member.workspace_id, member.email, member.role, instance_admin=member.instance_admin)


class SignInRequired(Unauthorized):
    """A page needs a signed-in member; the console answers with a redirect to /sign-in."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in to see this page")
        self.next_path = next_path


class PasswordChangeRequired(Forbidden):
    """The member signed in with a one-time password; everything else waits until it is changed."""

    def __init__(self, next_path: str = "") -> None:
        super().__init__("change your one-time password first")
        self.next_path = next_path  # the page asked for, to return to once it is changed


class CsrfRefused(Forbidden):
    def __init__(self) -> None:
        super().__init__(CSRF_REFUSED)


async def signed_in(request: Request) -> Session:
    """FastAPI dependency for pages: the signed-in member's session. Without one the page
    redirects to /sign-in?next=<path>; a member with a one-time password is sent to
    /change-password first."""
    session = await current_session(request)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if session is None:
        raise SignInRequired(path)
    if session.member.must_change_password and request.url.path not in BEFORE_PASSWORD_CHANGE:
        raise PasswordChangeRequired(path if request.method == "GET" else "")
    return session


def require(role: str) -> Callable[[Request], Awaitable[Session]]:
    """A dependency: `signed_in`, and refused (403) unless the member's role is at least `role`."""

    async def member_with_role(request: Request) -> Session:
        session = await signed_in(request)
        if not role_allows(session.member.role, role):
            raise Forbidden(f"this needs the {role} role; you are signed in as {session.member.role}")
        return session

    return member_with_role


Member = Depends(signed_in)
Editor = Depends(require("editor"))
Owner = Depends(require("owner"))


async def checked_form(request: Request, expected: str | None) -> FormData:
    """The posted form, once its `csrf_token` field (or X-CSRF-Token header) matches `expected`;
    raises CsrfRefused otherwise. Pages catch it to show the form again with the message."""
    form = await request.form()
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not tokens_match(expected, presented if isinstance(presented, str) else None):
        raise CsrfRefused()
    return form


def form_csrf_token(request: Request) -> str:
    """The double-submit token of forms shown before sign-in: the cookie's, or a new one
    (`set_form_csrf_cookie` sends it)."""
    return request.cookies.get(FORM_CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_form_csrf_cookie(response: Response, request: Request, token: str) -> None:
    if request.cookies.get(FORM_CSRF_COOKIE) != token:
        response.set_cookie(
            FORM_CSRF_COOKIE, token, httponly=True, samesite="lax", secure=is_https(request), path="/"
        )


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request))


def is_redirect_error(error: PromptdeckError) -> bool:
    return isinstance(error, SignInRequired | PasswordChangeRequired)
