"""The console inside the app: its page routers, `/static/`, and HTML 404s for console paths
(the API prefixes keep their JSON errors)."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from promptdeck.http_errors import as_error
from promptdeck.web import (
    audit_pages,
    auth_pages,
    datasets_pages,
    deployments_pages,
    evaluations_pages,
    logs_pages,
    prompts_pages,
    quotas_pages,
    run_sessions_pages,
    settings_pages,
    usage_pages,
    users_pages,
    webhooks_pages,
    workspaces_pages,
)
from promptdeck.web.pages import SECURITY_HEADERS, STATIC, error_page
from promptdeck.web.session import current_session

# Page routers, in order. A new screen adds its module here.
ROUTERS = (
    auth_pages.router,
    settings_pages.router,
    deployments_pages.router,
    logs_pages.router,
    run_sessions_pages.router,
    datasets_pages.router,
    evaluations_pages.router,
    prompts_pages.router,
    usage_pages.router,
    quotas_pages.router,
    users_pages.router,
    webhooks_pages.router,
    workspaces_pages.router,
    audit_pages.router,
)
# Paths that belong to an API (JSON errors), never to the console.
API_PREFIXES = ("/api", "/v1", "/prompt", "/docs", "/redoc", "/openapi.json")


def is_console_path(path: str) -> bool:
    return not any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


class CachedStatic(StaticFiles):
    """Static files, kept by browsers but checked on each use (ETag; an unchanged file is a
    304), so a page script and base.html share one unversioned `/static/console.js`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


async def favicon() -> Response:
    """`/favicon.ico`, which browsers and tools ask for whatever a page's `<link rel="icon">`
    (base.html links the SVG): the same mark as a 32 px icon, instead of a 404."""
    return FileResponse(
        STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "no-cache"}
    )


def mount_console(app: FastAPI) -> None:
    for router in ROUTERS:  # each page's header lists the member's workspaces (the switcher)
        app.include_router(router, dependencies=[workspaces_pages.WithMemberships])
    app.add_api_route("/favicon.ico", favicon, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/static", CachedStatic(directory=STATIC), name="static")


async def not_found_page(request: Request, exc: StarletteHTTPException) -> Response:
    """An unknown console path (or method) as an HTML page, with the header when signed in."""
    await current_session(request)
    error = as_error(exc)
    if exc.status_code == 404:
        error.message = f"There is no page at {request.url.path}."
    elif exc.status_code == 405:
        error.message = f"{request.url.path} does not accept {request.method} requests."
    response = error_page(error, request)
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(exc.headers or {})
    return response
