"""Workspaces through the admin API of a live server: only an instance administrator manages
them; a new workspace comes with a working admin key; archiving refuses its keys at once and
restoring lets them in again; every action is in the instance's audit log."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Deck


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def test_only_an_instance_admin_manages_workspaces(deck: Deck) -> None:
    with deck.client() as admin:
        plain = ok(admin.post("/api/keys", json={"name": "ops", "scopes": ["admin"]}), 201)["api_key"]
        reader = ok(admin.post("/api/keys", json={"name": "dash", "scopes": ["read"]}), 201)["api_key"]
        listed = ok(admin.get("/api/workspaces"))["data"]
        assert [w["id"] for w in listed] == [deck.workspace_id]
    with deck.client(plain) as client:
        message = refused(client.get("/api/workspaces"), 403, "forbidden")
        assert "instance administrator" in message
        refused(client.post("/api/workspaces", json={"name": "team b"}), 403, "forbidden")
        refused(client.post(f"/api/workspaces/{deck.workspace_id}/archive"), 403, "forbidden")
        refused(client.patch(f"/api/workspaces/{deck.workspace_id}", json={"name": "x"}), 403, "forbidden")
        assert ok(client.get("/api/workspace"))["id"] == deck.workspace_id
    with deck.client(reader) as client:
        own = ok(client.get("/api/workspace"))
        assert own["id"] == deck.workspace_id and own["name"] == "default" and own["archived_at"] is None
        refused(client.get("/api/workspaces"), 403, "forbidden")


def test_create_rename_archive_restore(deck: Deck) -> None:
    with deck.client() as admin:
        created = ok(admin.post("/api/workspaces", json={"name": "  Team B "}), 201)
        assert created["name"] == "Team B" and created["archived_at"] is None
        team_key = created["admin_key"]
        assert team_key.startswith("pd_") and created["key"]["scopes"] == ["admin"]
        assert team_key not in admin.get("/api/workspaces").text
        refused(admin.post("/api/workspaces", json={"name": "team b"}), 409, "conflict")
        refused(admin.post("/api/workspaces", json={"name": " "}), 422, "validation_error")

        with deck.client(team_key) as team:
            assert ok(team.get("/api/workspace"))["id"] == created["id"]
            assert ok(team.get("/api/prompts"))["data"] == []  # nothing of the first workspace
            assert ok(team.get("/api/deployments"))["data"] == []
            refused(team.get("/api/workspaces"), 403, "forbidden")  # a workspace admin, not the instance's

            renamed = ok(admin.patch(f"/api/workspaces/{created['id']}", json={"name": "Team Blue"}))
            assert renamed["name"] == "Team Blue"
            assert ok(team.get("/api/workspace"))["name"] == "Team Blue"

            archived = ok(admin.post(f"/api/workspaces/{created['id']}/archive"))
            assert archived["archived_at"] is not None
            message = refused(team.get("/api/prompts"), 401, "unauthorized")  # the very next call
            assert "archived" in message
            listed = {w["id"]: w for w in ok(admin.get("/api/workspaces"))["data"]}
            assert listed[created["id"]]["archived_at"] is not None

            ok(admin.post(f"/api/workspaces/{created['id']}/restore"))
            assert ok(team.get("/api/workspace"))["archived_at"] is None
            assert ok(team.get("/api/prompts"))["data"] == []

        # The caller's own workspace cannot be archived (so neither can the last active one).
        assert "working in this workspace" in refused(
            admin.post(f"/api/workspaces/{deck.workspace_id}/archive"), 409, "conflict"
        )
        refused(admin.post("/api/workspaces/nope/archive"), 404, "not_found")

        events = ok(admin.get("/api/audit", params={"scope": "instance", "target_type": "workspace"}))["data"]
        actions = sorted(e["action"] for e in events if e["target_id"] == created["id"])
        assert actions == [
            "workspace.archived",
            "workspace.created",
            "workspace.renamed",
            "workspace.restored",
        ]
        assert team_key not in str(events)
