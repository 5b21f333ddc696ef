"""Console sessions and CSRF tokens as a request carries them: the cookie's name, the header's,
the token check, and the request's live session. Both the console (web/) and the admin API
(surfaces/callers.py, for a member calling it from the console) check them, and neither may
import the other, so they live here, beside `services` that resolves them. The console's pages,
forms and cookies are web/session.py.

The cookie `promptdeck_session` holds a random token; the database keeps its SHA-256
(store/console_sessions.py).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from promptdeck.services import Services
from promptdeck.store.console_sessions import Session

SESSION_COOKIE = "promptdeck_session"
CSRF_HEADER = "x-csrf-token"
CSRF_REFUSED = (
    "This request was refused because it did not carry this page's security token (CSRF): "
    "it may have come from another site, or the page is stale. Nothing was changed; "
    "reload the page and send it again."
)


def services(request: Request) -> Services:
    result: Services = request.app.state.services
    return result


async def current_session(request: Request) -> Session | None:
    """The request's live session, if its cookie names one (looked up once per request)."""
    if hasattr(request.state, "console_session"):
        cached: Session | None = request.state.console_session
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    session = await services(request).console_sessions.resolve(token) if token else None
    request.state.console_session = session
    return session


def tokens_match(expected: str | None, presented: str | None) -> bool:
    return bool(expected and presented) and hmac.compare_digest(str(expected), str(presented))
