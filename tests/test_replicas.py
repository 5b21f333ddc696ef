"""Limits, budgets and key revocations hold across replicas (issue 16, "Tests with real
servers"): two `promptdeck serve` processes, one PostgreSQL, one Redis, one fake upstream
serving a priced model, and 100 concurrent calls spread over both replicas.

Under CI=true these run, never skip: PostgreSQL and Redis missing there is a failure.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from promptdeck.engine.invocation import CHARS_PER_TOKEN, prompt_chars
from tests.support.fake_openai import FakeOpenAI, Script, push_prompt
from tests.support.invoking import INPUTS
from tests.support.postgres import PostgresServer
from tests.support.redis_server import redis_server
from tests.support.replicas import Replicas, two_replicas

CALLS = 100
# USD per million tokens, set as a price override: the fake upstream reports 11 input and 4
# output tokens a call, and each prompt allows 64 output tokens, so a call's worst case is well
# above what it really costs.
PRICE = {"input_per_mtok": 20.0, "output_per_mtok": 40.0}
RATE = 10  # calls per minute, across both replicas


@pytest.fixture(scope="module")
def pair(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Both replicas, with the deployments `limited`, `budgeted` and `open` on a priced model.
    The key cache's TTL is long, so only a change event can make replica B drop a key in time."""
    directory: Path = tmp_path_factory.mktemp("replicas")
    with FakeOpenAI() as upstream, redis_server() as redis:
        for model in ("limited", "budgeted", "open"):  # slow enough that the calls overlap
            upstream.scripts[model] = Script(delay=0.05)
        settings = {"PROMPTDECK_CACHE_TTL": "300"}
        with two_replicas(directory, postgres.new_database(), redis.url, upstream.url, **settings) as pair:
            for name in ("limited", "budgeted", "open"):
                push_prompt(pair.a.url, pair.admin_key, name, f"openai/{name}")
                with pair.a.client(pair.admin_key) as admin:
                    priced = admin.put(f"/api/prices/openai/{name}", json=PRICE)
                    assert priced.status_code == 200, priced.text
            yield pair


def refusals(responses: list[httpx.Response], code: str) -> list[httpx.Response]:
    refused = [r for r in responses if r.status_code != 200]
    for response in refused:
        assert response.status_code == 429, response.text
        assert response.json()["error_code"] == code, response.text
        assert int(response.headers["Retry-After"]) >= 0, response.headers
    return refused


def test_a_rate_limit_holds_across_replicas(pair: Replicas) -> None:
    with pair.b.client(pair.admin_key) as admin:  # set on B, counted on both
        limit = {"subject_kind": "deployment", "subject": "limited", "requests_per_minute": RATE}
        made = admin.put("/api/limits", json=limit)
        assert made.status_code == 200, made.text
    responses = asyncio.run(pair.invoke_many(CALLS, "limited"))
    admitted = [r for r in responses if r.status_code == 200]
    refused = refusals(responses, "too_many_requests")
    assert 0 < len(admitted) <= RATE, [r.status_code for r in responses]
    assert len(admitted) + len(refused) == CALLS
    assert refused[0].headers["X-RateLimit-Limit"] == str(RATE), refused[0].headers


def test_a_budget_holds_across_replicas(pair: Replicas) -> None:
    with pair.a.client(pair.admin_key) as admin:
        reservation = worst_case(admin)
        budget_usd = round(reservation * 4.5, 6)  # a few calls at once, more as they settle
        budget = {
            "subject_kind": "deployment",
            "subject": "budgeted",
            "period": "day",
            "amount_usd": budget_usd,
        }
        made = admin.put("/api/budgets", json=budget)
        assert made.status_code == 200, made.text
    responses = asyncio.run(pair.invoke_many(CALLS, "budgeted"))
    admitted = [r for r in responses if r.status_code == 200]
    refusals(responses, "budget_exceeded")
    spent = sum(spend_of(pair, r.json()["request_id"]) for r in admitted)
    assert admitted and len(admitted) < CALLS, [r.status_code for r in responses]
    assert spent <= budget_usd + reservation, (spent, budget_usd, reservation, len(admitted))


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(pair: Replicas) -> None:
    with pair.a.client(pair.admin_key) as admin:
        made = admin.post("/api/keys", json={"name": "short-lived", "scopes": ["invoke"]})
        assert made.status_code == 201, made.text
        key_id, secret = made.json()["id"], made.json()["api_key"]
        with pair.b.client(secret) as caller:
            body = {"deployment": "open", "inputs": INPUTS}
            assert caller.post("/v1/prompt/invoke", json=body).status_code == 200  # B caches the key
            revoked = admin.post(f"/api/keys/{key_id}/revoke")
            assert revoked.status_code == 200, revoked.text
            started = time.monotonic()
            while (status := caller.post("/v1/prompt/invoke", json=body).status_code) == 200:
                assert time.monotonic() - started < 1.0, "replica B still serves a key revoked on A"
                time.sleep(0.02)
            assert status == 401


def worst_case(admin: httpx.Client) -> float:
    """One call's reservation on `budgeted` as the engine makes it: the rendered prompt's input
    estimated at CHARS_PER_TOKEN, the output at the prompt's max_tokens, both at PRICE."""
    rendered = admin.post("/api/deployments/budgeted/payload", json={"inputs": INPUTS})
    assert rendered.status_code == 200, rendered.text
    payload = rendered.json()["payload"]
    input_tokens = math.ceil(prompt_chars(payload["messages"]) / CHARS_PER_TOKEN)
    output_tokens = int(payload.get("max_tokens") or payload["max_completion_tokens"])
    return (input_tokens * PRICE["input_per_mtok"] + output_tokens * PRICE["output_per_mtok"]) / 1e6


def spend_of(pair: Replicas, request_id: str) -> float:
    """A run's settled cost, waiting for the replica that ran it to write it."""
    deadline = time.monotonic() + 10
    with pair.a.client(pair.admin_key) as admin:
        while True:
            found = admin.get(f"/api/runs/{request_id}")
            if found.status_code == 200:
                cost = found.json()["cost"]
                assert cost is not None and cost > 0, found.json()
                return float(cost)
            assert time.monotonic() < deadline, found.text
            time.sleep(0.05)
