"""API keys over the admin API against a live server: what each scope allows (the table in
docs/governance.md "Keys and scopes"), a key narrowed to some deployments in every dialect,
expiry checked at each use, rotation with a grace period, revocation, an archived workspace's
keys, and the audit trail of each change."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from promptdeck.domain.change_events import AccessChanged
from promptdeck.domain.runs import utcnow
from promptdeck.store.audit_log import AuditFilters
from promptdeck.store.tables import workspaces
from tests.conftest import EXAMPLE, Deck

OTHER = yaml.safe_load(
    EXAMPLE.replace("prompt: summarize", "prompt: other").replace("  summarize:", "  other:")
)


def create(deck: Deck, **body: Any) -> dict[str, Any]:
    with deck.client() as client:
        response = client.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def client_of(deck: Deck, key: str) -> httpx.Client:
    return deck.client(key)


def audit_actions(deck: Deck, target_id: str) -> list[dict[str, Any]]:
    page = deck.live.call(
        lambda: deck.services.audit.page(deck.workspace_id, AuditFilters(target_id=target_id))
    )
    return list(page["data"])


# ── scopes: a representative allowed and refused route for each (docs/governance.md) ──────────

PROMPT = {"slug": "scoped", "name": "Scoped"}
SCOPE_TABLE: dict[str, list[tuple[str, str, Any, int]]] = {
    # scope: (method, path, JSON body, expected status)
    "invoke": [
        ("GET", "/v1/models", None, 200),
        (
            "POST",
            "/v1/deployments/provider-payload",
            {"deployment_name": "summarize", "inputs": [{"type": "STRING", "name": "text", "value": "hi"}]},
            200,
        ),
        ("GET", "/api/prompts", None, 403),
        ("GET", "/api/runs", None, 403),
        ("POST", "/api/prompts", PROMPT, 403),
        ("GET", "/api/keys", None, 403),
    ],
    "read": [
        ("GET", "/api/prompts", None, 200),
        ("GET", "/api/runs", None, 200),
        ("GET", "/api/deployments", None, 200),
        ("POST", "/api/prompts", PROMPT, 403),
        ("GET", "/api/keys", None, 403),
        ("POST", "/api/keys", {"name": "x"}, 403),
        ("GET", "/v1/models", None, 403),
        ("POST", "/v1/prompt/invoke", {"deployment": "summarize", "inputs": {"text": "hi"}}, 403),
    ],
    "admin": [
        ("GET", "/api/prompts", None, 200),
        ("GET", "/api/keys", None, 200),
        ("POST", "/api/prompts", PROMPT, 201),
        ("GET", "/v1/models", None, 200),
    ],
}


@pytest.mark.parametrize("scope", list(SCOPE_TABLE))
def test_each_scope_allows_and_refuses_what_the_docs_say(sqlite_deck: Deck, scope: str) -> None:
    secret = create(sqlite_deck, name=scope, scopes=[scope])["api_key"]
    with client_of(sqlite_deck, secret) as client:
        for method, path, body, status in SCOPE_TABLE[scope]:
            headers = {"X-API-KEY": secret} if path.startswith("/v1/deployments") else {}
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == status, (scope, method, path, response.text)


# ── create: names, deployments, expiry ──────────────────────────────────────────────────────


def test_create_checks_scopes_deployments_and_expiry(sqlite_deck: Deck) -> None:
    with sqlite_deck.client() as client:
        for body, words in [
            ({"scopes": ["owner"]}, "scopes"),
            ({"deployments": ["nope"]}, "no deployment named 'nope'"),
            ({"deployments": []}, "at least one"),
            ({"expires_in_days": 1, "expires_at": "2099-01-01T00:00:00Z"}, "not both"),
            ({"expires_at": "2001-01-01T00:00:00Z"}, "in the future"),
            ({"expires_at": "2099-01-01T00:00:00"}, "timezone"),
        ]:
            response = client.post("/api/keys", json=body)
            assert response.status_code in (400, 422), response.text
            assert words in response.text, response.text
    created = create(sqlite_deck, name="ci", deployments=["summarize"], expires_in_days=30)
    assert created["deployments"] == ["summarize"] and created["api_key"].startswith("pd_")
    days = created["expires_at"] and (created["expires_at"][:10])
    assert days == (utcnow() + timedelta(days=30)).date().isoformat()
    with sqlite_deck.client() as client:
        listed = {k["id"]: k for k in client.get("/api/keys").json()["data"]}
    assert listed[created["id"]]["deployments"] == ["summarize"] and "api_key" not in listed[created["id"]]
    (event,) = audit_actions(sqlite_deck, created["id"])
    assert event["action"] == "key.created" and created["api_key"] not in str(event)


# ── a key narrowed to some deployments ──────────────────────────────────────────────────────


def test_a_key_with_a_deployments_list_is_refused_and_logged_elsewhere_in_every_dialect(deck: Deck) -> None:
    with deck.client() as client:
        assert client.post("/api/push", json=OTHER).status_code == 200
    secret = create(deck, name="only-summarize", deployments=["summarize"])["api_key"]
    vellum_inputs = [{"type": "STRING", "name": "text", "value": "hi"}]
    with client_of(deck, secret) as client:
        models = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["summarize"]
        refused = {
            "fetchhive": client.post(
                "/v1/prompt/invoke", json={"deployment": "other", "inputs": {"text": "hi"}}
            ),
            "traceport": client.post("/prompt/other/run", json={"variables": {"text": "hi"}}),
            "openai": client.post(
                "/v1/chat/completions", json={"model": "other", "messages": [], "variables": {"text": "hi"}}
            ),
            "vellum": client.post(
                "/v1/execute-prompt",
                json={"prompt_deployment_name": "other", "inputs": vellum_inputs},
                headers={"X-API-KEY": secret},
            ),
        }
        payload = client.post(
            "/v1/deployments/provider-payload",
            json={"deployment_name": "other", "inputs": vellum_inputs},
            headers={"X-API-KEY": secret},
        )
        allowed_payload = client.post(
            "/v1/deployments/provider-payload",
            json={"deployment_name": "summarize", "inputs": vellum_inputs},
            headers={"X-API-KEY": secret},
        )
    assert allowed_payload.status_code == 200, allowed_payload.text
    assert payload.status_code == 403 and "may call only: summarize" in payload.text, payload.text
    for dialect, response in refused.items():
        assert response.status_code == 403, (dialect, response.text)
        assert "may not call deployment 'other'" in response.text, (dialect, response.text)
        assert "summarize" in response.text
    assert refused["openai"].json()["error"]["message"].startswith("this API key may not call")
    runs = [r for r in deck.runs() if r["deployment"] == "other"]
    assert sorted(r["dialect"] for r in runs) == ["fetchhive", "openai", "traceport", "vellum"]
    assert {(r["status"], r["error_code"]) for r in runs} == {("error", "forbidden")}


# ── expiry, rotation, revocation, archived workspaces ──────────────────────────────────────


def test_an_expired_key_is_refused_even_while_cached(sqlite_deck: Deck) -> None:
    soon = (utcnow() + timedelta(seconds=1.5)).isoformat()
    secret = create(sqlite_deck, name="brief", scopes=["read"], expires_at=soon)["api_key"]
    with client_of(sqlite_deck, secret) as client:
        assert client.get("/api/prompts").status_code == 200  # cached from here on
        time.sleep(2)
        refused = client.get("/api/prompts")
    assert refused.status_code == 401 and "expired at" in refused.json()["error"]["message"], refused.text


def test_a_rotated_key_works_until_its_grace_ends_and_the_new_one_goes_on(deck: Deck) -> None:
    old = create(deck, name="svc", scopes=["read"], deployments=["summarize"])
    with client_of(deck, old["api_key"]) as client:
        assert client.get("/api/prompts").status_code == 200
    with deck.client() as client:
        response = client.post(f"/api/keys/{old['id']}/rotate", json={"grace_seconds": 2})
    assert response.status_code == 201, response.text
    new = response.json()
    assert (new["name"], new["scopes"], new["deployments"]) == ("svc", ["read"], ["summarize"])
    assert new["rotated_from"] == old["id"] and new["api_key"] != old["api_key"]
    assert new["old_key"]["expires_at"] is not None and new["expires_at"] is None
    with client_of(deck, old["api_key"]) as before, client_of(deck, new["api_key"]) as after:
        assert before.get("/api/prompts").status_code == 200  # still in its grace period
        assert after.get("/api/prompts").status_code == 200
        time.sleep(2.5)
        refused = before.get("/api/prompts")
        assert refused.status_code == 401 and "expired" in refused.text
        assert after.get("/api/prompts").status_code == 200
    with deck.client() as client:
        again = client.post(f"/api/keys/{old['id']}/rotate")
    assert again.status_code == 422 and "expired" in again.text
    (event,) = audit_actions(deck, old["id"])[:1]
    assert event["action"] == "key.rotated" and new["api_key"] not in str(event)
    assert event["after"]["new"]["id"] == new["id"]


def test_a_revoked_key_is_refused_at_once(sqlite_deck: Deck) -> None:
    created = create(sqlite_deck, name="gone", scopes=["read"])
    with client_of(sqlite_deck, created["api_key"]) as client:
        assert client.get("/api/prompts").status_code == 200  # cached
        with sqlite_deck.client() as admin:
            revoked = admin.post(f"/api/keys/{created['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert client.get("/api/prompts").status_code == 401
    assert [e["action"] for e in audit_actions(sqlite_deck, created["id"])] == ["key.revoked", "key.created"]


def test_an_archived_workspaces_keys_are_refused(sqlite_deck: Deck) -> None:
    secret = create(sqlite_deck, name="tenant", scopes=["invoke"])["api_key"]
    with client_of(sqlite_deck, secret) as client:
        assert client.get("/v1/models").status_code == 200

        async def archive() -> None:
            services = sqlite_deck.services
            async with services.db.begin() as conn:
                where = workspaces.c.id == sqlite_deck.workspace_id
                await conn.execute(sa.update(workspaces).where(where).values(archived_at=utcnow()))
            services.changes.publish(AccessChanged(sqlite_deck.workspace_id))

        sqlite_deck.live.call(archive)
        refused = client.get("/v1/models")
    assert refused.status_code == 401 and "archived" in refused.json()["error"]["message"], refused.text
