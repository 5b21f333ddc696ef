"""The audit log over the admin API of a live server: every admin action the API takes records
who (the key), from where (address, user agent), what and the values before and after, never a
secret (the stored rows are searched for each one); reading is filtered, paged newest first and
exported as JSON Lines or CSV; a read key and a workspace key asking for the instance's events
are refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from promptdeck.store.audit_log import Actor
from promptdeck.store.tables import audit_events
from tests.conftest import Deck
from tests.test_webhooks import start_deck

AGENT = "audit-test/1.0"
SECRETS = ("sk-audit-first-secret-9f8e7d6c", "sk-audit-second-secret-1a2b3c4d")
SIMPLE = {
    "model": "local/smollm2-135m-instruct",
    "messages": [{"role": "user", "content": "Hi {{text}}"}],
    "inputs": {"text": {"type": "string", "required": True}},
}


@pytest.fixture
def deck(database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A server that may send webhooks to loopback (an endpoint on 127.0.0.1 is accepted)."""
    deck = start_deck(database_url, tmp_path, webhooks_allow_private=True)
    yield deck
    deck.live.stop()


def client(deck: Deck, key: str | None = None) -> httpx.Client:
    http = deck.client(key)
    http.headers["User-Agent"] = AGENT
    return http


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def stored_events(deck: Deck) -> list[dict[str, Any]]:
    """The audit_events table itself, read on the server's own database engine."""

    async def read() -> list[dict[str, Any]]:
        async with deck.services.db.connect() as conn:
            rows = await conn.execute(sa.select(audit_events))
            return [{str(k): v for k, v in r._mapping.items()} for r in rows]

    return list(deck.live.call(read))


def test_every_admin_action_records_who_where_and_what_never_a_secret(deck: Deck) -> None:
    webhook_secrets: list[str] = []
    with client(deck) as http:
        key = next(k for k in ok(http.get("/api/keys"))["data"] if k["name"] == "admin")
        ok(http.put("/api/providers/openai/credential", json={"api_key": SECRETS[0]}))
        base = "http://127.0.0.1:9/v1"
        ok(http.put("/api/providers/openai/credential", json={"api_key": SECRETS[1], "base_url": base}))
        ok(http.delete("/api/providers/openai/credential"), 204)
        price = {"input_per_mtok": 1.5, "output_per_mtok": 2.5}
        ok(http.put("/api/prices/custom/model-a", json=price))
        ok(http.put("/api/prices/custom/model-a", json=price | {"output_per_mtok": 3.0}))
        ok(http.delete("/api/prices/custom/model-a"), 204)
        ok(http.put("/api/settings/retention", json={"days": 30}))
        ok(http.put("/api/settings/retention", json={"days": None}))
        hook = {"url": "http://127.0.0.1:9/hook", "events": ["deployment.deleted"], "description": "a"}
        created = ok(http.post("/api/webhooks", json=hook), 201)
        webhook_secrets.append(created["secret"])
        ok(http.patch(f"/api/webhooks/{created['id']}", json={"description": "b", "enabled": False}))
        webhook_secrets.append(ok(http.post(f"/api/webhooks/{created['id']}/rotate-secret"))["secret"])
        ok(http.delete(f"/api/webhooks/{created['id']}"), 204)
        # A move and a rollback, each recorded by the one write behind every move.
        ok(http.post("/api/prompts/summarize/versions", json=SIMPLE), 201)
        ok(http.put("/api/deployments/summarize/variants/short", json={"version": 2, "note": "try 2"}))
        ok(http.post("/api/deployments/summarize/variants/short/rollback", json={"note": "too terse"}))
        events = ok(http.get("/api/audit", params={"limit": 500}))["data"]

    mine = [e for e in events if e["actor"] == "admin"]
    for event in mine:
        assert event["actor_key_id"] == key["id"], event
        assert event["address"] == "127.0.0.1" and event["user_agent"] == AGENT, event

    first, second, deleted = [e for e in reversed(mine) if e["target_type"] == "credential"]
    assert (first["action"], first["target_id"], first["before"]) == ("credential.stored", "openai", None)
    assert first["after"]["provider"] == "openai" and first["after"]["base_url"] is None
    assert second["before"]["base_url"] is None and second["after"]["base_url"] == base
    assert (deleted["action"], deleted["before"]["base_url"], deleted["after"]) == (
        "credential.deleted",
        base,
        None,
    )

    set_first, set_again, price_gone = [e for e in reversed(mine) if e["target_type"] == "price"]
    assert set_first["before"] is None and set_first["after"]["output_per_mtok"] == 2.5
    assert (set_again["before"]["output_per_mtok"], set_again["after"]["output_per_mtok"]) == (2.5, 3.0)
    assert (price_gone["action"], price_gone["target_id"], price_gone["after"]) == (
        "price.deleted",
        "custom/model-a",
        None,
    )

    kept, forever = [e for e in reversed(mine) if e["action"] == "retention.set"]
    assert (kept["before"], kept["after"], kept["target_id"]) == (
        {"days": None},
        {"days": 30},
        deck.workspace_id,
    )
    assert (forever["before"], forever["after"]) == ({"days": 30}, {"days": None})

    hooks = [e for e in reversed(mine) if e["target_type"] == "webhook"]
    assert [e["action"] for e in hooks] == [
        "webhook.created",
        "webhook.changed",
        "webhook.secret_rotated",
        "webhook.deleted",
    ]
    assert hooks[0]["after"]["url"] == hook["url"] and "secret" not in hooks[0]["after"]
    assert (hooks[1]["before"]["enabled"], hooks[1]["after"]["enabled"]) == (True, False)
    assert hooks[1]["after"]["description"] == "b" and hooks[3]["before"]["description"] == "b"

    back, moved = [e for e in mine if e["action"] == "variant.moved"][:2]
    assert (moved["target_type"], moved["target_id"]) == ("variant", "summarize/short")
    assert moved["before"] == {"version": 1}
    assert moved["after"] == {"prompt": "summarize", "version": 2, "note": "try 2"}
    assert (back["target_id"], back["before"], back["after"]["version"]) == (
        "summarize/short",
        {"version": 2},
        1,
    )
    assert back["after"]["note"] == "rollback from version 2: too terse"

    # `promptdeck init`'s seed moved variants outside any request: recorded, with no address.
    seeded = [e for e in events if e["actor"] == "tests"]
    assert seeded and all(e["address"] == "" and e["actor_key_id"] is None for e in seeded)

    everything = orjson.dumps(stored_events(deck), default=str).decode()
    for secret in (*SECRETS, *webhook_secrets):
        assert secret not in everything
        assert secret[-8:] not in everything  # not even the end of one


def record(deck: Deck, workspace_id: str | None, action: str, target: str, who: str = "someone") -> None:
    audit = deck.services.audit
    deck.live.call(lambda: audit.record(workspace_id, Actor(who), action, action.split(".")[0], target))


def test_filters_pages_and_exports(sqlite_deck: Deck) -> None:
    deck = sqlite_deck
    for n in range(7):
        record(deck, deck.workspace_id, "probe.made", f"k{n}", who="ops@example.com")
    record(deck, deck.workspace_id, "probe.dropped", "k0")
    record(deck, deck.workspace_id, "prober.made", "r")  # shares "probe" but not "probe."
    record(deck, deck.workspace_id, "member.invited", "a@example.com")
    record(deck, "another-workspace", "probe.made", "elsewhere")  # never shown here

    with client(deck) as http:

        def ids(**params: Any) -> list[str]:
            return [
                e["target_id"] for e in ok(http.get("/api/audit", params=params | {"limit": 500}))["data"]
            ]

        every = ok(http.get("/api/audit", params={"action": "probe.", "limit": 500}))["data"]
        assert [e["target_id"] for e in every] == ["k0", "k6", "k5", "k4", "k3", "k2", "k1", "k0"]
        times = [e["created_at"] for e in every]
        assert times == sorted(times, reverse=True)  # newest first
        assert ids(action="probe.*") == ids(action="probe.")
        assert ids(action="probe.dropped") == ["k0"]
        assert ids(action="prober.made") == ["r"]
        assert ids(actor="ops@example.com") == ["k6", "k5", "k4", "k3", "k2", "k1", "k0"]
        assert ids(target_type="member") == ["a@example.com"]
        assert ids(target_type="probe", target_id="k0") == ["k0", "k0"]
        assert "elsewhere" not in ids()
        cut = every[3]["created_at"]  # k4
        assert ids(action="probe.made", since=cut) == ["k6", "k5", "k4"]
        assert ids(action="probe.made", until=cut) == ["k3", "k2", "k1", "k0"]

        seen, cursor = [], None
        while True:
            params = {"action": "probe.", "limit": 3} | ({"cursor": cursor} if cursor else {})
            page = ok(http.get("/api/audit", params=params))
            assert len(page["data"]) <= 3
            seen += [e["id"] for e in page["data"]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen == [e["id"] for e in every]

        assert http.get("/api/audit", params={"cursor": "bm9wZQ=="}).status_code == 422
        assert http.get("/api/audit", params={"actor": "a\x00b"}).status_code == 422
        bad = http.get("/api/audit", params={"since": "yesterday"})
        assert bad.status_code == 422 and "since" in bad.json()["error"]["message"]

        lines = http.get("/api/audit/export", params={"action": "probe."})
        assert lines.status_code == 200 and lines.headers["content-type"] == "application/x-ndjson"
        assert "attachment" in lines.headers["content-disposition"]
        exported = [json.loads(line) for line in lines.text.splitlines()]
        assert [e["id"] for e in exported] == seen and exported[0]["actor"] == "someone"

        table = http.get("/api/audit/export", params={"format": "csv", "actor": "ops@example.com"})
        assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(table.text)))
        assert [r["target_id"] for r in rows] == ["k6", "k5", "k4", "k3", "k2", "k1", "k0"]
        assert rows[0]["action"] == "probe.made" and rows[0]["before"] == ""
        assert http.get("/api/audit/export", params={"format": "xml"}).status_code == 422

        later = (deck.live.call(_now) + timedelta(hours=1)).isoformat()
        assert ok(http.get("/api/audit", params={"since": later}))["data"] == []


async def _now() -> Any:
    from promptdeck.domain.runs import utcnow

    return utcnow()


def test_read_keys_and_other_workspaces_keys_are_refused(sqlite_deck: Deck) -> None:
    deck = sqlite_deck
    record(deck, None, "workspace.created", "ws-2", who="root")  # an instance-level event
    with client(deck) as http:
        reader = ok(http.post("/api/keys", json={"name": "reader", "scopes": ["read"]}), 201)["api_key"]
        admin = ok(http.post("/api/keys", json={"name": "plain-admin", "scopes": ["admin"]}), 201)["api_key"]
        instance = ok(http.get("/api/audit", params={"scope": "instance"}))["data"]  # init's key
        assert [e["target_id"] for e in instance] == ["ws-2"]
        assert all(e["workspace_id"] is None for e in instance)
        assert "ws-2" not in [e["target_id"] for e in ok(http.get("/api/audit"))["data"]]

    with client(deck, reader) as http:
        for path in ("/api/audit", "/api/audit/export"):
            refused = http.get(path)
            assert refused.status_code == 403, refused.text
            assert "admin" in refused.json()["error"]["message"]
    with client(deck, admin) as http:
        assert http.get("/api/audit").status_code == 200
        refused = http.get("/api/audit", params={"scope": "instance"})
        assert refused.status_code == 403 and "instance administrator" in refused.text
        assert http.get("/api/audit", params={"scope": "galaxy"}).status_code == 422
