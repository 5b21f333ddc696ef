"""Every route a promptdeck app answers, read from the app itself (not from the OpenAPI document,
which leaves out routes hidden from the schema), so a sweep over them cannot miss a new one.

    for route in app_routes(live.settings, live.services):
        route.method, route.path, route.params     # "PUT", "/api/prices/{model:path}", ("model",)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import _IncludedRouter

from promptdeck.app import create_app
from promptdeck.config import Settings
from promptdeck.services import Services

PARAMETER = re.compile(r"\{([^}]+)\}")
KEYED_PREFIXES = ("/api/", "/v1/", "/prompt/")  # answered for an API key; the console uses sessions


@dataclass(frozen=True, order=True)
class AppRoute:
    path: str  # as declared, e.g. /api/users/{end_user:path}
    method: str

    @property
    def params(self) -> tuple[str, ...]:
        """Its path parameters' names, converters left out."""
        return tuple(p.split(":")[0] for p in PARAMETER.findall(self.path))

    def slots(self) -> list[str]:
        """Each path parameter with the segment before it, e.g. `deployments/{name}`: one name can
        mean different things (a deployment's, a dataset's) under different parents."""
        parts = self.path.strip("/").split("/")
        return [f"{parts[i - 1]}/{part}" for i, part in enumerate(parts) if part.startswith("{")]

    def fill(self, values: dict[str, str]) -> str:
        """The path with each parameter (`slots()` form) replaced by its value."""
        parts = self.path.strip("/").split("/")
        filled = [
            values[f"{parts[i - 1]}/{part}"] if part.startswith("{") else part for i, part in enumerate(parts)
        ]
        return "/" + "/".join(filled)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _fastapi(app: Any) -> FastAPI:
    """The FastAPI app inside create_app's middleware."""
    while not isinstance(app, FastAPI):
        app = app.app
    return app


def _walk(routes: Iterable[Any]) -> Iterator[Any]:
    for route in routes:
        if isinstance(route, _IncludedRouter):  # FastAPI's included router: its routes, prefixed
            yield from _walk(route.effective_candidates())
        else:
            yield route


def app_routes(settings: Settings, services: Services) -> list[AppRoute]:
    """Every (method, path) the app routes under a keyed prefix (`KEYED_PREFIXES`), HEAD left out."""
    app = _fastapi(create_app(settings, services))
    found = {
        AppRoute(route.path, method)
        for route in _walk(app.routes)
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD" and route.path.startswith(KEYED_PREFIXES)
    }
    return sorted(found)
