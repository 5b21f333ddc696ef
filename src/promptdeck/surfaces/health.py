"""`GET /healthz` (liveness) and `GET /readyz` (readiness), for load balancers and orchestrators.

Liveness does no I/O: if the process answers, it is alive. Readiness checks what serving needs
(engine/readiness.py) and answers 503 when anything fails, so a load balancer sends traffic
elsewhere. Neither needs a key: they say only whether each check passed (docs/deploy.md).
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, Response

from promptdeck.engine.readiness import Readiness
from promptdeck.surfaces.callers import services
from promptdeck.surfaces.http import dumps

router = APIRouter(tags=["health"])
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz", summary="Liveness: the process answers (no I/O)")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json", headers=NO_STORE)


@router.get(
    "/readyz",
    summary="Readiness: database, migrations, run writer and Redis (503 if any fails)",
    responses={503: {"description": "Not ready: the body lists each check and which failed"}},
)
async def readyz(request: Request) -> Response:
    checks = await readiness(request).checks()
    ready = all(check.ok for check in checks)
    body = {"status": "ready" if ready else "not ready", "checks": [asdict(check) for check in checks]}
    status = 200 if ready else 503
    return Response(dumps(body), status, media_type="application/json", headers=NO_STORE)


def readiness(request: Request) -> Readiness:
    """The server's one `Readiness`, made at the first probe."""
    state = request.app.state
    found: Readiness | None = getattr(state, "readiness", None)
    if found is None:
        served = services(request)
        redis_url = str(getattr(served.settings, "redis_url", "") or "")
        found = state.readiness = Readiness(served.db, served.writer, redis_url)
    return found
