"""`GET /metrics`: the server's Prometheus metrics, for a scraper only.

The series name deployments, models and error rates, which is the operator's business, not a
caller's: with PROMPTDECK_METRICS_TOKEN set a scrape must send it as a bearer token; without,
only a caller on loopback (a scraper on the same host, or a sidecar) is answered. Behind a
reverse proxy on the same host every caller looks local unless the proxy sets X-Forwarded-For
(uvicorn then sees the real client): set a token there (docs/operations.md).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from promptdeck.engine.auth import bearer
from promptdeck.surfaces.callers import services

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    served = services(request)
    refused = refusal(request, served.settings.metrics_token)
    if refused is not None:
        return refused
    if served.metrics is None:  # the route is left out then (app.py); this satisfies the types
        return Response("metrics are off (PROMPTDECK_METRICS=off)", 404, media_type="text/plain")
    return Response(served.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def refusal(request: Request, token: str) -> Response | None:
    """The answer to a caller that may not scrape (plain text, as a scraper shows it), or None:
    the token when one is set, else a loopback address."""
    if token:
        given = bearer(request.headers.get("authorization"))
        if not given:
            message = "send PROMPTDECK_METRICS_TOKEN as 'Authorization: Bearer <token>'"
            return Response(message, 401, media_type="text/plain", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), token.encode()):
            return Response("that is not the metrics token", 403, media_type="text/plain")
        return None
    if not is_loopback(request.client.host if request.client else ""):
        message = (
            "/metrics answers loopback callers only; set PROMPTDECK_METRICS_TOKEN to scrape from elsewhere"
        )
        return Response(message, 403, media_type="text/plain")
    return None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
