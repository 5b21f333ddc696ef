"""`create_app(settings)`: wires the services, the dialects and the admin API into one ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from promptdeck import __version__
from promptdeck.audit_trail import RequestOrigin
from promptdeck.config import Settings
from promptdeck.http_errors import as_error
from promptdeck.services import Services
from promptdeck.surfaces import (
    admin,
    admin_audit,
    admin_datasets,
    admin_evaluations,
    admin_keys,
    admin_quotas,
    admin_releases,
    admin_runs,
    admin_webhooks,
    admin_workspaces,
    analytics,
    fetchhive,
    health,
    metrics_route,
    openai_chat,
    openai_wire,
    playground,
    traceport,
    vellum,
)
from promptdeck.surfaces.access_log import AccessLog, access_log_wanted
from promptdeck.surfaces.http import BodyLimit, Endpoint, ErrorRenderer, HotRoutes, SecurityHeaders
from promptdeck.surfaces.request_metrics import RequestMetrics
from promptdeck.web.console import is_console_path, mount_console, not_found_page

# Path prefix -> the error shape its callers' clients understand (Fetch Hive's elsewhere).
ERROR_SHAPES: tuple[tuple[str, ErrorRenderer], ...] = (
    ("/api", admin.render_error),
    ("/v1/chat", openai_wire.render_error),
    ("/v1/models", openai_wire.render_error),
    ("/prompt/", openai_wire.render_error),
    ("/v1/execute-prompt", vellum.render_error),
    ("/v1/submit-completion-actuals", vellum.render_error),
    ("/v1/deployments", vellum.render_error),
)
DOCS_ASSETS = "/docs/assets"  # under /docs: an API path (JSON 404s), with the docs' CSP


def create_app(settings: Settings | None = None, services: Services | None = None) -> ASGIApp:
    settings = settings or Settings()
    built = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await built.start()
        try:
            yield
        finally:
            await built.stop()

    # /docs (Swagger UI) from assets installed with promptdeck (fastapi-offline), never a CDN:
    # the API description works without network access. No ReDoc: it fetches its logo remotely.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        redoc_url=None,
        title="promptdeck",
        version=__version__,
        description="Self-hosted prompt deployment server.",
        lifespan=lifespan,
        redirect_slashes=False,  # an API answers an unknown path with a JSON 404, never a redirect
    )
    app.state.services = built
    app.add_middleware(RequestOrigin)  # where each request came from, for the audit log
    app.include_router(fetchhive.router)
    app.include_router(openai_chat.router)
    app.include_router(traceport.router)
    app.include_router(vellum.router)
    app.include_router(admin.router)
    app.include_router(admin_runs.router)
    app.include_router(admin_keys.router)
    app.include_router(admin_webhooks.router)
    app.include_router(admin_quotas.router)
    app.include_router(admin_audit.router)
    app.include_router(admin_workspaces.router)
    app.include_router(admin_releases.router)
    app.include_router(admin_evaluations.router)
    app.include_router(admin_datasets.router)
    app.include_router(analytics.router)
    app.include_router(playground.router)
    app.include_router(health.router)
    metrics = built.metrics if settings.metrics else None  # PROMPTDECK_METRICS=off: no route, no hook
    if metrics is not None:
        app.include_router(metrics_route.router)
    mount_console(app)  # the web console's pages and /static/

    @app.exception_handler(StarletteHTTPException)
    async def not_routed(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown paths and methods, answered in the shape of the dialect whose paths they resemble."""
        path = request.url.path
        if is_console_path(path):
            return await not_found_page(request, exc)
        render = next((r for prefix, r in ERROR_SHAPES if path.startswith(prefix)), fetchhive.render_error)
        error = as_error(exc)
        error.message = f"{request.method} {request.url.path}: {error.message} (the API is listed at /docs)"
        response = render(error, request)
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    hot: dict[tuple[str, str], tuple[Endpoint, ErrorRenderer]] = {
        ("POST", path): (fetchhive.invoke, fetchhive.render_error) for path in fetchhive.INVOKE_PATHS
    }
    hot[("POST", openai_chat.INVOKE_PATHS[0])] = (openai_chat.chat_completions, openai_wire.render_error)
    hot[("POST", vellum.EXECUTE_PATHS[0])] = (vellum.execute_prompt, vellum.render_error)
    hot[("POST", vellum.EXECUTE_PATHS[1])] = (vellum.execute_prompt_stream, vellum.render_error)
    hot[("POST", traceport.RUN_PATH)] = (traceport.run, openai_wire.render_error)  # slug from the path
    served: ASGIApp = SecurityHeaders(BodyLimit(HotRoutes(app, hot), limit=settings.max_body_bytes))
    counted = RequestMetrics(served, metrics, (path for _, path in hot)) if metrics is not None else None
    if access_log_wanted(settings.log_level):  # outermost: its duration is the whole answer's
        also = counted.note if counted is not None else None  # one middleware for both
        served = AccessLog(served, json_lines=settings.log_format == "json", also=also)
    elif counted is not None:
        served = counted
    return served
