"""Rendering console pages: the Jinja2 templates, the context every page gets, security
headers, the server's time (`Server-Timing`), and errors as HTML (or a redirect to sign in)."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from promptdeck import __version__
from promptdeck.domain.errors import HTTP_STATUS, PromptdeckError, ValidationFailed
from promptdeck.http_errors import as_error
from promptdeck.store.console_sessions import Session
from promptdeck.web.session import PasswordChangeRequired, SignInRequired

M = TypeVar("M", bound=BaseModel)
WEB = Path(__file__).parent
STATIC = WEB / "static"
TEMPLATES = Jinja2Templates(directory=WEB / "templates")

# The header's navigation: (label, path). Screens not built yet are listed already.
NAV = (
    ("Prompts", "/prompts"),
    ("Deployments", "/deployments"),
    ("Logs", "/logs"),
    ("Users", "/users"),
    ("Usage", "/usage"),
    ("Limits & budgets", "/limits"),
    ("Webhooks", "/webhooks"),
    ("Settings", "/settings"),
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # pages hold CSRF tokens and, once, new secrets
}


TEMPLATES.env.globals.update(nav=NAV, version=__version__)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render `template` with what every page needs: `member`, `csrf_token`, `path`, and the
    optional `notice` (success) and `error` messages the base layout shows."""
    session: Session | None = getattr(request.state, "console_session", None)
    base: dict[str, Any] = {
        "session": session,
        "member": session.member if session else None,
        "csrf_token": session.csrf_token if session else context.pop("form_csrf", ""),
        "path": request.url.path,
        "notice": None,
        "error": None,
        "values": {},
    }
    return TEMPLATES.TemplateResponse(request, template, base | context, status_code=status)


def safe_next(target: str | None, default: str = "/") -> str:
    """Where to go after signing in: a path on this server only (never `//host`, a URL, or
    anything a browser would read as one once it drops tabs, newlines or backslashes)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return target
    return default


PASSWORD_CHANGED = "/settings?changed=password"  # Settings, saying the password was changed
_SETTINGS_ANYWAY = ("", "/", "/settings")  # no page asked for, or Settings itself


def change_password_path(target: str) -> str:
    """The forced password change, remembering the page the member asked for (if any)."""
    target = safe_next(target, "")
    return "/change-password" + ("" if target in _SETTINGS_ANYWAY else f"?{urlencode({'next': target})}")


def after_password_change(target: str) -> str:
    """Where a changed password leads: the page the member first asked for (a path on this
    server only), else Settings with its notice."""
    target = safe_next(target, "")
    return PASSWORD_CHANGED if target in _SETTINGS_ANYWAY else target


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def error_page(error: PromptdeckError, request: Request) -> Response:
    """A console error as HTML; a page that needs a session redirects to sign in."""
    if isinstance(error, SignInRequired):
        return redirect("/sign-in?next=" + quote(error.next_path, safe="/"))
    if isinstance(error, PasswordChangeRequired):
        return redirect(change_password_path(error.next_path))
    status = HTTP_STATUS.get(error.code, 500)
    titles = {401: "Sign in needed", 403: "Not allowed", 404: "Page not found", 405: "Not allowed"}
    return page(
        request, "error.html", status, title=titles.get(status, "Something went wrong"), message=error.message
    )


def server_timing(started_ns: int) -> str:
    """A `Server-Timing` value for the time since `started_ns` (perf_counter_ns): what the
    console's pages cost the server, read by browsers' dev tools and bench/console_pages.py."""
    return f"app;dur={(time.perf_counter_ns() - started_ns) / 1e6:.2f}"


class ConsoleRoute(APIRoute):
    """Every console route: errors, expected or not, become an HTML page (or a redirect to
    sign in), and every answer carries the security headers and its server time."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            started = time.perf_counter_ns()
            try:
                response = await handler(request)
            except Exception as exc:
                response = error_page(as_error(exc), request)
            response.headers.update(SECURITY_HEADERS)
            response.headers["Server-Timing"] = server_timing(started)
            return response

        return guarded


def validated(model: type[M], data: dict[str, Any]) -> M:
    """A form's fields checked by the same Pydantic model the admin API uses for them."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ValidationFailed("; ".join(problems)) from exc
