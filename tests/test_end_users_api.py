"""`GET /api/users` and `GET /api/users/{end_user}` on a live server, on SQLite and PostgreSQL:
totals kept by the run writer, sorts, prefix search, cursor paging, one user's days from the
rollups, the link to their runs, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from promptdeck.domain.runs import ERROR, utcnow
from promptdeck.domain.usage_query import floor_to
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, deck_over
from tests.test_run_queries import put
from tests.test_usage_api import record

upstream = fake_openai.upstream


@pytest.fixture
def live(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[Deck]:
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        yield deck


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def problems(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return list(error["details"] or [error["message"]])


def names(client: httpx.Client, **params: Any) -> list[str]:
    """Every end user listed, following next_cursor page by page."""
    found: list[str] = []
    cursor = None
    while True:
        page = ok(client.get("/api/users", params={**params, **({"cursor": cursor} if cursor else {})}))
        found += [u["end_user"] for u in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def test_list_sorts_searches_and_pages(live: Deck) -> None:
    now = utcnow()
    # (user, runs, cost each, hours ago of the last run)
    plan = [
        ("ann", 3, 0.01, 5),
        ("anna", 1, 0.5, 1),
        ("bob", 4, 0.0, 30),
        ("carl", 2, 0.02, 2),
        ("dee", 2, 0.02, 3),
    ]
    put(
        live,
        [
            record(
                live,
                end_user=user,
                cost=cost,
                input_tokens=10,
                output_tokens=3,
                status=ERROR if user == "bob" and i == 0 else "success",
                created_at=now - timedelta(hours=ago + i),
            )
            for user, count, cost, ago in plan
            for i in range(count)
        ]
        + [record(live, end_user=None), record(live, end_user="")],  # nobody's runs
    )
    with live.client() as client:
        page = ok(client.get("/api/users"))
        assert page["next_cursor"] is None
        assert [u["end_user"] for u in page["data"]] == ["anna", "carl", "dee", "ann", "bob"]  # newest first
        bob = page["data"][-1]
        assert bob == {
            "end_user": "bob",
            "first_seen": bob["first_seen"],
            "last_seen": bob["last_seen"],
            "runs": 4,
            "errors": 1,
            "error_rate": 0.25,
            "input_tokens": 40,
            "output_tokens": 12,
            "tokens": 52,
            "cost": 0.0,
            "runs_url": "/api/runs?user=bob",
        }
        assert bob["first_seen"] < bob["last_seen"]
        assert names(client, sort="runs") == ["bob", "ann", "dee", "carl", "anna"]  # ties: name, desc
        assert names(client, sort="cost", order="asc") == ["bob", "ann", "carl", "dee", "anna"]
        assert names(client, sort="runs", order="asc", limit=2) == ["anna", "carl", "dee", "ann", "bob"]
        assert names(client, limit=1) == ["anna", "carl", "dee", "ann", "bob"]
        assert names(client, q="ann") == ["anna", "ann"]
        assert names(client, q="An") == []  # case-sensitive
        assert names(client, q="ann", sort="cost", limit=1) == ["anna", "ann"]
        cursor = ok(client.get("/api/users", params={"limit": 1}))["next_cursor"]
        assert "cursor:" in problems(client.get("/api/users", params={"cursor": cursor, "sort": "runs"}))[0]
        assert "cursor:" in problems(client.get("/api/users", params={"cursor": "garbage"}))[0]
        assert len(problems(client.get("/api/users", params={"sort": "age", "order": "up"}))) == 2
        assert "q:" in problems(client.get("/api/users", params={"q": ""}))[0]
        assert client.get("/api/users", params={"limit": 0}).status_code == 422


def test_one_user_with_daily_usage_and_a_link_to_their_runs(live: Deck) -> None:
    name = "team/a b ü"  # a slash, a space and more: the path takes the rest
    with live.client() as client:
        response = client.post(
            "/v1/prompt/invoke", json={"deployment": "fast", "inputs": INPUTS, "user": name}
        )
        assert response.status_code == 200, response.text
        now = utcnow()
        put(
            live,
            [record(live, end_user=name, cost=0.25, created_at=now - timedelta(days=d)) for d in (2, 2, 40)],
        )
        user = ok(client.get("/api/users/" + quote(name)))
        assert (user["end_user"], user["runs"], user["cost"]) == (name, 4, 0.75)
        assert user["runs_url"] == "/api/runs?user=team%2Fa%20b%20%C3%BC"
        logged = ok(client.get(user["runs_url"]))["data"]
        assert len(logged) == 4 and {r["end_user"] for r in logged} == {name}
        days = user["usage"]
        assert days["bucket"] == "day" and len(days["points"]) == 30  # the run 40 days ago is outside
        today = floor_to(now, "day").isoformat().replace("+00:00", "Z")
        assert days["points"][-1]["t"] == today and days["points"][-1]["runs"] == 1
        assert days["points"][-1]["input_tokens"] == 11  # the fake upstream's usage
        assert [p["runs"] for p in days["points"][-3:]] == [2, 0, 1]
        assert days["points"][-3]["cost"] == 0.5
        assert days["points"][-1]["latency_p50_ms"] is None  # no latency bins per end user
        missing = client.get("/api/users/nobody")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
