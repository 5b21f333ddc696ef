"""Every dialect's invoke endpoint is served ahead of FastAPI's routing (`HotRoutes`), Traceport's
`/prompt/{slug}/run` included: its slug is matched exactly as Starlette matches it, a path or a
method the hot route does not take still reaches FastAPI (the same 404s and 405s in OpenAI's
shape), and /metrics still labels a run by the route's template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.routing import compile_path

from promptdeck.app import create_app
from promptdeck.surfaces import openai_wire, traceport
from promptdeck.surfaces.http import HotRoute, HotRoutes, PathTemplate
from tests.conftest import Deck
from tests.support.app_routes import _fastapi, _walk
from tests.support.fake_openai import FakeOpenAI, deck_over, sqlite_url
from tests.support.invoking import INPUTS

# Each dialect's endpoints that run a deployment (DESIGN.md's table): (declared path, a real path).
INVOKE_ROUTES = (
    ("/v1/prompt/invoke", "/v1/prompt/invoke"),  # Fetch Hive
    ("/v1/invoke", "/v1/invoke"),
    ("/v1/execute-prompt", "/v1/execute-prompt"),  # Vellum
    ("/v1/execute-prompt-stream", "/v1/execute-prompt-stream"),
    ("/prompt/{slug}/run", "/prompt/fast/run"),  # Traceport
    ("/v1/chat/completions", "/v1/chat/completions"),  # OpenAI
)
RUN_PATH = "/prompt/{slug}/run"
TRACEPORT: HotRoute = (traceport.run, openai_wire.render_error)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def deck(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    directory: Path = tmp_path_factory.mktemp("hot-routes")
    with deck_over(upstream.url, sqlite_url(directory), directory) as deck:
        yield deck


def hot_routes(app: Any) -> HotRoutes:
    """The HotRoutes inside create_app's middleware."""
    while not isinstance(app, HotRoutes):
        app = app.app
    return app


def served_hot(routes: HotRoutes, method: str, path: str) -> HotRoute | None:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path}
    return routes.routes.get((method, path)) or routes.templated(scope)


@pytest.mark.parametrize(("declared", "path"), INVOKE_ROUTES)
def test_every_invoke_endpoint_is_served_ahead_of_routing(deck: Deck, declared: str, path: str) -> None:
    app = create_app(deck.live.settings, deck.services)
    hit = served_hot(hot_routes(app), "POST", path)
    assert hit is not None, f"POST {declared} goes through FastAPI's routing"
    (route,) = [r for r in _walk(_fastapi(app).routes) if r.path == declared and "POST" in r.methods]
    assert hit[0] is route.endpoint  # the very function FastAPI documents and would call


PATHS = [
    "/prompt/fast/run",
    "/prompt/a.b-c_d~e/run",
    "/prompt/é ü/run",
    "/prompt/run/run",
    "/prompt//run",
    "/prompt/a/b/run",
    "/prompt/fast/run/",
    "/prompt/fast/runs",
    "/prompt/fast",
    "/prompt/run",
    "/prompts/fast/run",
    "/v1/prompt/fast/run",
    "/prompt/fast/xrun",
]


@pytest.mark.parametrize("path", PATHS)
def test_the_slug_is_matched_as_starlette_matches_it(path: str) -> None:
    template = PathTemplate.of("POST", RUN_PATH, TRACEPORT)
    regex, _, _ = compile_path(RUN_PATH)
    found = regex.match(path)
    assert template.value("POST", path) == (found["slug"] if found else None)
    assert template.value("GET", path) is None


@pytest.mark.parametrize("path", ["/prompt/{a}/{b}", "/prompt{slug}/run", "/prompt/{slug}x/run"])
def test_a_hot_route_has_at_most_one_whole_segment_parameter(path: str) -> None:
    with pytest.raises(ValueError, match="at most one parameter"):
        PathTemplate.of("POST", path, TRACEPORT)


def run(deck: Deck, path: str, method: str = "POST") -> httpx.Response:
    with deck.client() as client:
        return client.request(
            method,
            path,
            content=orjson.dumps({"variables": INPUTS}),
            headers={"Content-Type": "application/json"},
        )


def test_a_traceport_run_on_the_hot_route_is_answered_logged_and_counted(deck: Deck) -> None:
    response = run(deck, "/prompt/fast/run")
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"
    request_id = response.headers["x-request-id"]
    deck.flush()
    assert any(r["request_id"] == request_id and r["dialect"] == "traceport" for r in deck.runs())
    metrics = httpx.get(deck.url + "/metrics", timeout=30).text
    labelled = 'promptdeck_http_requests_total{method="POST",route="/prompt/{slug}/run",status="200"}'
    assert labelled in metrics  # by its template, never the slug (no series per deployment)
    assert 'route="/prompt/fast/run"' not in metrics


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_an_unknown_deployment_is_a_404_in_openai_shape(deck: Deck) -> None:
    error = openai_error(run(deck, "/prompt/no-such-deployment/run"), 404)
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize("path", ["/prompt//run", "/prompt/fa%2Fst/run", "/prompt/fast/run/"])
def test_a_path_the_route_does_not_take_still_reaches_fastapi(deck: Deck, path: str) -> None:
    error = openai_error(run(deck, path), 404)
    assert "(the API is listed at /docs)" in error["message"]  # FastAPI's not-routed answer


def test_another_method_is_still_a_405(deck: Deck) -> None:
    response = run(deck, "/prompt/fast/run", method="PUT")
    openai_error(response, 405)
    assert response.headers["allow"] == "POST"
