"""Rate limits and budgets end to end, over real HTTP: a live server, the fake OpenAI upstream and
the embedded model (docs/governance.md). Limits and budgets are set through the workspace's
quota store on the server's own loop, which publishes `QuotasChanged` as the API does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from promptdeck.domain.quotas import Budget
from promptdeck.engine.quota_backend import Spend
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

DIALECTS = ("fetchhive", "vellum", "openai", "traceport")
VELLUM_INPUTS = [{"type": "STRING", "name": k, "value": v} for k, v in INPUTS.items()]
# USD per million tokens for `openai/fast`: a call reserves (~25 input + 64 max_tokens) * $1000 / 1M
# ≈ $0.089, and costs (11 + 4 reported tokens) * $1000 / 1M = $0.015.
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}


def call(deck: Deck, dialect: str, *, stream: bool = False, deployment: str = "fast") -> httpx.Response:
    """One call of `deployment` in a dialect, with the deck's admin key (non-streamed bodies are
    read whole, streamed ones too: a refusal comes before the first byte, as a plain response)."""
    bearer = {"Authorization": f"Bearer {deck.admin_key}"}
    if dialect == "fetchhive":
        path, headers = "/v1/prompt/invoke", bearer
        body: dict[str, Any] = {"deployment": deployment, "inputs": INPUTS, "streaming": stream}
    elif dialect == "vellum":
        path = "/v1/execute-prompt-stream" if stream else "/v1/execute-prompt"
        headers = {"X-API-KEY": deck.admin_key}
        body = {"prompt_deployment_name": deployment, "inputs": VELLUM_INPUTS}
    elif dialect == "openai":
        path, headers = "/v1/chat/completions", bearer
        body = {"model": deployment, "messages": [{"role": "user", "content": "hi"}], "variables": INPUTS}
        body["stream"] = stream
    else:
        path, headers = f"/prompt/{deployment}/run", bearer
        body = {"variables": INPUTS, "stream": stream}
    return httpx.post(deck.url + path, json=body, headers=headers, timeout=30)


def expect_refusal(response: httpx.Response, dialect: str, code: str) -> None:
    """A 429 in the dialect's own error shape, carrying `code` where the dialect has a code."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    if dialect == "fetchhive":
        assert set(body) - {"request_id"} == {"error", "message", "error_code"}, body
        assert body["error_code"] == code
    elif dialect == "vellum":
        assert set(body) == {"detail"} and body["detail"], body
    else:  # OpenAI's shape, as OpenAI's own clients read a 429
        kind = {"too_many_requests": "requests", "budget_exceeded": "insufficient_quota"}[code]
        wire = {"too_many_requests": "rate_limit_exceeded", "budget_exceeded": "budget_exceeded"}[code]
        assert body["error"]["type"] == kind and body["error"]["code"] == wire, body


def set_limit(deck: Deck, kind: str, subject: str, rpm: int | None, tpm: int | None = None) -> None:
    deck.live.call(lambda: deck.services.quotas.set_limit(deck.workspace_id, kind, subject, rpm, tpm))


def set_budget(deck: Deck, amount_usd: float, kind: str = "workspace", subject: str = "") -> dict[str, Any]:
    _, after = deck.live.call(
        lambda: deck.services.quotas.set_budget(deck.workspace_id, kind, subject, "day", amount_usd)
    )
    return dict(after)


def held(deck: Deck, budget: dict[str, Any], subject: str = "") -> Spend:
    """What the governor's counter holds for a budget now (settled, reserved)."""
    shape = Budget(
        budget["id"], budget["subject_kind"], budget["subject"], budget["period"], budget["amount_usd"]
    )
    spend = deck.live.call(lambda: deck.services.engine.governor.spend(deck.workspace_id, shape, subject))
    return spend or Spend()


def errors_logged(deck: Deck, code: str) -> list[dict[str, Any]]:
    return [run for run in deck.runs() if run["error_code"] == code]


@pytest.fixture
def priced(start_deck: StartDeck) -> Iterator[Deck]:
    """A server whose `fast` deployment (model `openai/fast` on the fake upstream) has a price."""
    deck = start_deck()
    with deck.client() as client:
        client.put("/api/prices/openai/fast", json=PRICE).raise_for_status()
    yield deck


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_limit_of_n_a_minute_refuses_the_next_call(
    start_deck: StartDeck, dialect: str, stream: bool
) -> None:
    deck = start_deck()
    set_limit(deck, "workspace", "", 3)
    for _ in range(3):
        assert call(deck, dialect, stream=stream).status_code == 200
    refused = call(deck, dialect, stream=stream)
    expect_refusal(refused, dialect, "too_many_requests")
    headers = refused.headers
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]) == ("3", "0")
    assert 1 <= int(headers["X-RateLimit-Reset"]) <= 60  # seconds until the window is empty
    assert 1 <= int(headers["Retry-After"]) <= 60
    [logged] = errors_logged(deck, "too_many_requests")
    assert logged["status"] == "error" and logged["deployment"] == "fast"
    assert len(deck.runs()) == 4


def test_limits_apply_per_subject_and_change_at_once(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    deck = start_deck()
    set_limit(deck, "end_user", "", 1)  # each end user their own one a minute
    with deck.client() as client:

        def as_user(user: str | None) -> int:
            body = {"deployment": "fast", "inputs": INPUTS, "user": user}
            return client.post("/v1/prompt/invoke", json=body).status_code

        assert [as_user("ann"), as_user("bob"), as_user("ann"), as_user(None), as_user(None)] == [
            200,
            200,
            429,
            200,  # a call with no end user has no end-user limit
            200,
        ]
        set_limit(deck, "end_user", "", 2)  # raised: the cached quotas are dropped at once
        assert as_user("ann") == 200
    assert upstream.count("fast") == 5


def test_tokens_a_minute_count_real_usage_after_the_call(start_deck: StartDeck) -> None:
    deck = start_deck()
    set_limit(deck, "deployment", "fast", None, tpm=20)  # each call uses 11 + 4 tokens
    statuses = [call(deck, "fetchhive").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # 0, then 15 tokens are under 20; 30 are not


def test_a_budget_reserves_the_worst_case_and_settles_the_real_cost(
    priced: Deck, upstream: FakeOpenAI
) -> None:
    deck = priced
    budget = set_budget(deck, 0.1)
    assert call(deck, "fetchhive").status_code == 200
    spend = held(deck, budget)
    assert spend.settled_usd == pytest.approx(0.015) and spend.reserved_usd == 0
    # $0.015 spent + up to $0.089 for the next call > $0.1: refused before any upstream call
    for dialect in DIALECTS:
        expect_refusal(call(deck, dialect), dialect, "budget_exceeded")
    assert upstream.count("fast") == 1
    assert len(errors_logged(deck, "budget_exceeded")) == 4
    assert held(deck, budget) == Spend(pytest.approx(0.015), 0.0)
    # the runs logged say what was spent, whatever the counter holds
    costs = [run["cost"] for run in deck.runs() if run["status"] == "success"]
    assert costs == [pytest.approx(0.015)]


def test_a_zero_cost_model_is_never_refused(priced: Deck) -> None:
    deck = priced
    set_budget(deck, 0.0)  # nothing may be spent
    expect_refusal(call(deck, "fetchhive"), "fetchhive", "budget_exceeded")
    with deck.client() as client:  # the embedded model costs nothing
        for _ in range(2):
            answer = client.post(
                "/v1/prompt/invoke", json={"deployment": "summarize", "inputs": {"text": "Hi."}}
            )
            assert answer.status_code == 200, answer.text


def test_a_model_without_a_price_is_refused_under_a_budget(
    start_deck: StartDeck, upstream: FakeOpenAI
) -> None:
    deck = start_deck()  # `openai/fast` has no price here
    set_budget(deck, 100.0)
    refused = call(deck, "fetchhive")
    expect_refusal(refused, "fetchhive", "budget_exceeded")
    assert "no known price" in refused.json()["message"]
    assert upstream.count("fast") == 0


def test_a_stream_cut_short_settles_its_cost(priced: Deck, upstream: FakeOpenAI) -> None:
    deck = priced
    budget = set_budget(deck, 10.0)
    upstream.scripts["fast"] = Script(chunks=("one ", "two ", "three ", "four"), delay=0.3, usage=None)
    body = {"deployment": "fast", "inputs": INPUTS, "streaming": True}
    with deck.client() as client, client.stream("POST", "/v1/prompt/invoke", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and "one" in line:
                break  # the caller leaves after the first words
    deadline = time.monotonic() + 10
    while (spend := held(deck, budget)).reserved_usd > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spend.reserved_usd == 0  # the reservation was released
    assert 0 < spend.settled_usd < 0.089  # and its estimated cost (prompt + words sent) counted
    [cut] = [run for run in deck.runs() if run["error_code"] == "cancelled"]
    assert cut["status"] == "error"
