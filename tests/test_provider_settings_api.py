"""The provider settings API: a workspace's credentials (stored encrypted, never shown, used at
once, removable), which providers take one, and the exact provider payload of a deployment,
built without calling anyone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from promptdeck.store.tables import provider_credentials
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, deck_over, run_of
from tests.support.invoking import invoke

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

ENV_KEY = "sk-from-the-environment-0000"
STORED_KEY = "sk-stored-in-promptdeck-7f3a9c1e5b"


@pytest.fixture
def other_upstream() -> Iterator[FakeOpenAI]:
    """A second fake upstream, where a stored credential's base URL points."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def db_deck(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A live server on each database whose `openai` provider is `upstream`, keyed by the environment."""
    with deck_over(upstream.url, database_url, tmp_path, openai_api_key=ENV_KEY) as deck:
        yield deck


def put_credential(deck: Deck, provider: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    with deck.client(key) as client:
        return client.put(f"/api/providers/{provider}/credential", json=body)


def stored_rows(deck: Deck) -> list[dict[str, Any]]:
    """The `provider_credentials` table itself, read on the server's own database engine."""

    async def read() -> list[dict[str, Any]]:
        async with deck.services.db.connect() as conn:
            rows = await conn.execute(sa.select(provider_credentials))
            return [dict(row._mapping) for row in rows]

    return list(deck.live.call(read))


def served(deck: Deck) -> dict[str, Any]:
    response = invoke(deck, "fast")
    assert response.status_code == 200, response.text
    assert response.json()["response"] == Script().text
    return run_of(deck, response.json()["request_id"])


# ── credentials ──────────────────────────────────────────────────────────────────


def test_a_credential_is_stored_encrypted_and_never_shown(db_deck: Deck, other_upstream: FakeOpenAI) -> None:
    stored = put_credential(db_deck, "openai", {"api_key": STORED_KEY, "base_url": other_upstream.url})

    assert stored.status_code == 200, stored.text
    assert STORED_KEY not in stored.text
    assert (stored.json()["provider"], stored.json()["base_url"]) == ("openai", other_upstream.url)
    (row,) = stored_rows(db_deck)
    assert (row["workspace_id"], row["provider"], row["base_url"]) == (
        db_deck.workspace_id,
        "openai",
        other_upstream.url,
    )
    assert STORED_KEY not in row["secret"] and STORED_KEY[3:] not in row["secret"]
    assert db_deck.services.credentials.fernet.decrypt(row["secret"].encode()).decode() == STORED_KEY

    with db_deck.client() as client:
        listed = client.get("/api/providers")
        run_list = client.get("/api/runs")
    assert listed.status_code == 200, listed.text
    assert STORED_KEY not in listed.text and ENV_KEY not in listed.text
    providers = {p["name"]: p["credential"] for p in listed.json()["data"]}
    assert {"openai", "anthropic", "gemini", "azure", "openai-responses", "local"} <= set(providers)
    assert set(providers["openai"]) == {"provider", "base_url", "updated_at"}
    assert providers["openai"]["base_url"] == other_upstream.url
    assert all(credential is None for name, credential in providers.items() if name != "openai")

    served(db_deck)  # the key is used, yet appears in no run
    with db_deck.client() as client:
        runs = client.get("/api/runs")
    assert STORED_KEY not in run_list.text and STORED_KEY not in runs.text


def test_a_stored_credential_is_used_at_once_and_deleting_it_restores_the_environments(
    db_deck: Deck, upstream: FakeOpenAI, other_upstream: FakeOpenAI
) -> None:
    served(db_deck)
    assert upstream.seen[-1].headers["authorization"] == f"Bearer {ENV_KEY}"

    base_url = other_upstream.url.replace("/v1", "/team-proxy/v1")
    assert put_credential(db_deck, "openai", {"api_key": STORED_KEY, "base_url": base_url}).status_code == 200
    run = served(db_deck)

    (seen,) = other_upstream.seen
    assert seen.headers["authorization"] == f"Bearer {STORED_KEY}"
    assert seen.path == "/team-proxy/v1/chat/completions"
    assert len(upstream.seen) == 1  # the environment's upstream was not called
    assert (run["provider"], run["model"], run["status"]) == ("openai", "openai/fast", "success")

    with db_deck.client() as client:
        assert client.delete("/api/providers/openai/credential").status_code == 204
        again = client.delete("/api/providers/openai/credential")
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert stored_rows(db_deck) == []
    served(db_deck)

    assert len(other_upstream.seen) == 1
    assert [s.headers["authorization"] for s in upstream.seen] == [f"Bearer {ENV_KEY}"] * 2


def test_a_stored_credential_without_a_base_url_keeps_the_configured_one(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck(openai_api_key=ENV_KEY)
    assert put_credential(deck, "openai", {"api_key": STORED_KEY}).status_code == 200

    served(deck)

    assert upstream.seen[-1].headers["authorization"] == f"Bearer {STORED_KEY}"
    assert upstream.seen[-1].path == "/v1/chat/completions"


def test_only_configured_providers_other_than_local_take_a_credential(start_deck: StartDeck) -> None:
    deck = start_deck()
    body = {"api_key": STORED_KEY}

    unknown = put_credential(deck, "nope", body)
    local = put_credential(deck, "local", body)
    empty = put_credential(deck, "openai", {"api_key": ""})
    no_key = put_credential(deck, "openai", {"base_url": "http://127.0.0.1:9/v1"})
    with deck.client() as client:
        unknown_delete = client.delete("/api/providers/nope/credential")

    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert "'nope'" in unknown.json()["error"]["message"] and "openai" in unknown.json()["error"]["message"]
    assert local.status_code == 404 and "'local'" in local.json()["error"]["message"]
    assert empty.status_code == 422 and "api_key" in empty.json()["error"]["message"]
    assert no_key.status_code == 422 and "api_key" in no_key.json()["error"]["message"]
    assert unknown_delete.status_code == 404
    assert stored_rows(deck) == []


def test_credentials_need_the_admin_scope(start_deck: StartDeck) -> None:
    deck = start_deck()
    with deck.client() as client:
        keys = {
            scope: client.post("/api/keys", json={"name": scope, "scopes": [scope]}).json()["api_key"]
            for scope in ("read", "invoke")
        }

    for key in keys.values():
        refused = put_credential(deck, "openai", {"api_key": STORED_KEY}, key)
        assert refused.status_code in (401, 403), refused.text
    with deck.client(keys["read"]) as client:
        assert client.get("/api/providers").status_code == 200
        assert client.delete("/api/providers/openai/credential").status_code in (401, 403)
    assert stored_rows(deck) == []


# ── provider payloads ────────────────────────────────────────────────────────────


def expected_payload(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "fast",
        "messages": [
            {"role": "system", "content": "You summarize text in one sentence."},
            {"role": "user", "content": f"Summarize for {INPUTS['audience']}: {INPUTS['text']}"},
        ],
        "temperature": 0.2,
        "max_tokens": 64,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def payload(deck: Deck, body: dict[str, Any], deployment: str = "fast") -> httpx.Response:
    with deck.client() as client:
        return client.post(f"/api/deployments/{deployment}/payload", json=body)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_payload_is_the_exact_body_the_provider_gets_and_calls_no_one(
    upstream: FakeOpenAI, start_deck: StartDeck, stream: bool
) -> None:
    deck = start_deck(openai_api_key=ENV_KEY)
    assert (
        put_credential(deck, "openai", {"api_key": STORED_KEY, "base_url": upstream.url}).status_code == 200
    )

    answer = payload(deck, {"inputs": INPUTS, "stream": stream, "variant": "beta"})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"payload": expected_payload(stream)}
    assert STORED_KEY not in answer.text and ENV_KEY not in answer.text
    assert upstream.requests == []
    assert deck.runs() == []  # nothing ran

    if stream:
        fake_openai.invoke_streamed(deck, "fast", "beta")
    else:
        assert invoke(deck, "fast", variant="beta").status_code == 200
    assert upstream.requests == [answer.json()["payload"]]  # what a real call sends


def test_a_payload_needs_the_inputs_and_a_known_deployment(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()

    missing = payload(deck, {"inputs": {"text": "only the text"}})
    wrong = payload(deck, {"inputs": {"text": 3, "audience": "kids"}})
    no_variant = payload(deck, {"inputs": INPUTS, "variant": "nope"})
    no_deployment = payload(deck, {"inputs": INPUTS}, deployment="nope")

    assert missing.status_code == 422, missing.text
    assert missing.json()["error"]["code"] == "validation_error"
    assert "audience" in missing.json()["error"]["message"]
    assert missing.json()["error"]["details"]["missing"] == ["audience"]
    assert wrong.status_code == 422 and "text" in wrong.json()["error"]["message"]
    assert no_variant.status_code == 404 and "nope" in no_variant.json()["error"]["message"]
    assert no_deployment.status_code == 404 and "nope" in no_deployment.json()["error"]["message"]
    assert upstream.requests == []
