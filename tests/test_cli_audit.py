"""`promptdeck audit` and `promptdeck audit export FILE` of the real console script against a live
server whose audit log holds real admin actions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx

from tests.conftest import Deck
from tests.test_cli import cli_env, fails, succeeds


def test_list_filter_json_and_export(sqlite_deck: Deck, tmp_path: Path) -> None:
    deck = sqlite_deck
    with deck.client() as http:
        for days in (30, 7):
            assert http.put("/api/settings/retention", json={"days": days}).status_code == 200
        price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
        assert http.put("/api/prices/custom/cli-model", json=price).status_code == 200
        created = http.post("/api/keys", json={"name": "reader", "scopes": ["read"]})
        reader = created.json()["api_key"]
    env = cli_env(
        tmp_path / "unused", PROMPTDECK_URL=deck.url, PROMPTDECK_API_KEY=deck.admin_key, COLUMNS="250"
    )

    listed = succeeds(env, "audit")
    assert "retention.set" in listed and "price.set" in listed and "127.0.0.1" in listed
    assert '{"days": 30}' in listed  # before and after, on one line each
    retention = succeeds(env, "audit", "--action", "retention.")
    assert "retention.set" in retention and "price.set" not in retention

    events = json.loads(succeeds(env, "audit", "--action", "retention.set", "--json"))
    assert [(e["before"], e["after"]) for e in events] == [
        ({"days": 30}, {"days": 7}),
        ({"days": None}, {"days": 30}),
    ]
    assert all(e["actor"] == "admin" and e["user_agent"].startswith("python-httpx") for e in events)
    assert json.loads(succeeds(env, "audit", "--since", "2999-01-01T00:00:00Z", "--json")) == []
    assert "since" in fails(env, "audit", "--since", "last week")

    jsonl = tmp_path / "audit.jsonl"
    said = succeeds(env, "audit", "export", str(jsonl), "--action", "retention.")
    assert said.strip() == f"exported 2 audit event(s) to {jsonl}"
    assert [json.loads(line)["after"] for line in jsonl.read_text().splitlines()] == [
        {"days": 7},
        {"days": 30},
    ]

    table = tmp_path / "audit.csv"
    succeeds(env, "audit", "export", str(table))
    rows = list(csv.DictReader(table.open()))
    assert {"retention.set", "price.set"} <= {r["action"] for r in rows}
    assert all(r["address"] == "127.0.0.1" or r["actor"] == "tests" for r in rows)

    read_only = env | {"PROMPTDECK_API_KEY": reader}
    assert "'admin' scope" in fails(read_only, "audit")
    assert "'admin' scope" in fails(read_only, "audit", "export", str(tmp_path / "refused.jsonl"))


def test_the_export_streams_every_page(sqlite_deck: Deck, tmp_path: Path) -> None:
    """More events than one export page (500): all of them, newest first, none twice."""
    deck = sqlite_deck
    with httpx.Client(base_url=deck.url, headers={"Authorization": f"Bearer {deck.admin_key}"}) as http:
        for n in range(260):
            http.put("/api/settings/retention", json={"days": n + 1}).raise_for_status()
            http.put("/api/settings/retention", json={"days": None}).raise_for_status()
    env = cli_env(tmp_path / "unused", PROMPTDECK_URL=deck.url, PROMPTDECK_API_KEY=deck.admin_key)
    out = tmp_path / "all.jsonl"
    succeeds(env, "audit", "export", str(out), "--action", "retention.set")
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) == 520 and len({e["id"] for e in events}) == 520
    assert events[-1]["after"] == {"days": 1} and events[0]["after"] == {"days": None}
