"""The admin API under `/api/` against a live server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
from typing import Any
from unittest.mock import ANY

import httpx
import yaml

from tests.conftest import EXAMPLE, Deck

MODEL = "local/smollm2-135m-instruct"


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The admin error shape: `{"error": {"code", "message", "details"}}`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


def version_body(content: str = "Echo: {{text}}", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "params": {"temperature": 0.0, "max_tokens": 2, "seed": 1},
        **extra,
    }


def refused_invoke(client: httpx.Client, deployment: str = "summarize", **body: Any) -> None:
    """An invoke with a missing input: logged as an error run without calling the model."""
    response = client.post("/v1/prompt/invoke", json={"deployment": deployment, "inputs": {}, **body})
    assert response.status_code == 422, response.text
    assert "missing required input" in response.json()["message"]


def document(slug: str, content: str, deploy: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prompt": slug,
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "params": {"max_tokens": 2},
    }
    if deploy is not None:
        data["deploy"] = deploy
    return data


# ── prompts and versions ─────────────────────────────────────────────────────


def test_prompts_and_versions(deck: Deck) -> None:
    with deck.client() as client:
        created = ok(client.post("/api/prompts", json={"slug": "echo", "description": "repeats"}), 201)
        assert created["slug"] == "echo" and created["name"] == "echo" and created["description"] == "repeats"
        assert len(created["id"]) == 32

        duplicate = error(client.post("/api/prompts", json={"slug": "echo"}), 409)
        assert duplicate["code"] == "conflict" and "echo" in duplicate["message"]
        bad_slug = error(client.post("/api/prompts", json={"slug": "Not A Slug"}), 422)
        assert bad_slug["code"] == "validation_error"

        listed = ok(client.get("/api/prompts"))["data"]
        assert [(p["slug"], p["latest_version"]) for p in listed] == [("echo", None), ("summarize", 1)]
        assert listed[0]["created_at"] == created["created_at"]  # the same UTC time, read back or not

        first = ok(client.post("/api/prompts/echo/versions", json=version_body(note="v1")), 201)
        second = ok(client.post("/api/prompts/echo/versions", json=version_body("Again: {{ text }}")), 201)
        assert (first["number"], second["number"]) == (1, 2)
        assert first["prompt"] == "echo" and first["note"] == "v1" and first["author"] == "admin"
        assert first["inputs"] == {"text": {"type": "string", "required": True}}
        assert second["messages"] == [{"role": "user", "content": "Again: {{ text }}"}]

        versions = ok(client.get("/api/prompts/echo/versions"))["data"]
        assert [v["number"] for v in versions] == [1, 2]
        assert second.pop("serving") == []  # what each deployment of the prompt serves: none yet
        assert second.pop("held") == []  # no `latest` follower the release check kept back
        assert ok(client.get("/api/prompts/echo/versions/2")) == second
        prompt = ok(client.get("/api/prompts/echo"))
        assert prompt["id"] == created["id"] and [v["number"] for v in prompt["versions"]] == [1, 2]
        assert [p["latest_version"] for p in ok(client.get("/api/prompts"))["data"]] == [2, 1]

        assert error(client.get("/api/prompts/echo/versions/3"), 404)["code"] == "not_found"
        assert error(client.get("/api/prompts/nope"), 404)["code"] == "not_found"
        assert (
            error(client.post("/api/prompts/nope/versions", json=version_body()), 404)["code"] == "not_found"
        )


def test_an_invalid_version_lists_every_problem(deck: Deck) -> None:
    with deck.client() as client:
        body = {
            "model": "no-provider",
            "messages": [{"role": "robot", "content": "hi"}],
            "params": {"temperature": 7, "colour": "red"},
        }
        problem = error(client.post("/api/prompts/summarize/versions", json=body), 422)
        assert problem["code"] == "validation_error"
        assert [p.split(":", 1)[0] for p in problem["details"]] == [
            "model",
            "messages[0].role",
            "params.temperature",
            "params.colour",
        ]
        for detail in problem["details"]:
            assert detail in problem["message"]

        shape = error(client.post("/api/prompts/summarize/versions", json={"messages": "hi"}), 422)
        assert any(d.startswith("model:") for d in shape["details"])
        assert any(d.startswith("messages:") for d in shape["details"])

        assert [v["number"] for v in ok(client.get("/api/prompts/summarize/versions"))["data"]] == [1]


# ── deployments and variants ─────────────────────────────────────────────────


def test_deployments_and_moving_a_variant(deck: Deck) -> None:
    with deck.client() as client:
        ok(client.post("/api/prompts", json={"slug": "echo"}), 201)
        ok(client.post("/api/prompts/echo/versions", json=version_body("One: {{text}}")), 201)
        ok(client.post("/api/prompts/echo/versions", json=version_body("Two: {{text}}")), 201)

        created = ok(
            client.post(
                "/api/deployments", json={"name": "echo", "prompt": "echo", "variants": {"default": 1}}
            ),
            201,
        )
        assert created["default_variant"] == "default"
        assert created["variants"]["default"]["version"] == 1
        assert created["variants"]["default"]["prompt"] == "echo"
        newest = ok(client.post("/api/deployments", json={"name": "echo-newest", "prompt": "echo"}), 201)
        assert newest["variants"]["default"]["version"] == 2  # no variants given: the newest, pinned
        assert "follows_latest" not in newest["variants"]["default"]["config"]
        body = {"name": "echo-latest", "prompt": "echo", "variants": {"default": "latest"}}
        latest = ok(client.post("/api/deployments", json=body), 201)
        assert latest["variants"] == {
            "default": {
                "version": 2,
                "version_id": latest["variants"]["default"]["version_id"],
                "prompt": "echo",
                "config": {  # the reliability defaults: one retry, no fallbacks
                    "timeouts": {},
                    "retries": {"max_attempts": 2, "backoff_seconds": 0.5, "max_backoff_seconds": 8.0},
                    "fallbacks": [],
                    "follows_latest": True,  # created with "latest", on purpose: follows new versions
                },
            }
        }

        names = [d["name"] for d in ok(client.get("/api/deployments"))["data"]]
        assert names == ["echo", "echo-latest", "echo-newest", "summarize"]
        assert ok(client.get("/api/deployments/echo")) == created

        assert (
            error(client.post("/api/deployments", json={"name": "echo", "prompt": "echo"}), 409)["code"]
            == "conflict"
        )
        assert (
            error(client.post("/api/deployments", json={"name": "x", "prompt": "nope"}), 404)["code"]
            == "not_found"
        )
        assert (
            error(
                client.post("/api/deployments", json={"name": "x", "prompt": "echo", "variants": {"a": 9}}),
                404,
            )["code"]
            == "not_found"
        )
        bad_default = {"name": "x", "prompt": "echo", "variants": {"a": 1}, "default_variant": "b"}
        assert error(client.post("/api/deployments", json=bad_default), 422)["code"] == "validation_error"
        assert error(client.get("/api/deployments/x"), 404)["code"] == "not_found"

        # the engine caches the deployment on this first call …
        refused_invoke(client, "echo")
        moved = ok(
            client.put("/api/deployments/echo/variants/default", json={"version": 2, "note": "ship it"})
        )
        assert moved["variants"]["default"]["version"] == 2
        # … and serves the move at once
        answer = ok(client.post("/v1/prompt/invoke", json={"deployment": "echo", "inputs": {"text": "hi"}}))
        assert isinstance(answer["response"], str)

        canary = ok(client.put("/api/deployments/echo/variants/canary", json={"version": 1}))
        assert {n: v["version"] for n, v in canary["variants"].items()} == {"canary": 1, "default": 2}
        refused_invoke(client, "echo", variant="canary")

        unknown = error(client.put("/api/deployments/echo/variants/default", json={"version": 9}), 404)
        assert "no version 9" in unknown["message"]
        assert (
            error(client.put("/api/deployments/nope/variants/default", json={"version": 1}), 404)["code"]
            == "not_found"
        )
        assert (
            error(client.put("/api/deployments/echo/variants/default", json={"version": "newest"}), 422)[
                "code"
            ]
            == "validation_error"
        )
        assert ok(client.get("/api/deployments/echo"))["variants"]["default"]["version"] == 2

    runs = [r for r in deck.runs() if r["deployment"] == "echo"]  # newest first
    assert [(r["variant"], r["version_number"], r["status"]) for r in runs] == [
        ("canary", 1, "error"),
        ("default", 2, "success"),
        ("default", 1, "error"),
    ]
    assert runs[1]["request_id"] == answer["request_id"]
    assert runs[1]["messages"] == [{"role": "user", "content": "Two: hi"}]


# ── API keys ─────────────────────────────────────────────────────────────────


def test_api_keys(deck: Deck) -> None:
    with deck.client() as client:
        created = ok(client.post("/api/keys", json={"name": "app", "scopes": ["invoke"]}), 201)
        secret = created["api_key"]
        assert secret.startswith("pd_") and len(secret) > 30
        assert created["prefix"] == secret[:10] and created["scopes"] == ["invoke"]
        assert created["revoked_at"] is None

        listed = ok(client.get("/api/keys"))["data"]
        assert [k["name"] for k in listed] == ["admin", "app"]
        mine = next(k for k in listed if k["id"] == created["id"])
        assert mine["prefix"] == secret[:10]
        assert mine["created_at"] == created["created_at"]
        assert "api_key" not in mine and "key_hash" not in mine
        text = client.get("/api/keys").text
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text
        assert secret not in client.get(f"/api/keys/{created['id']}/revoke").text  # not a GET route

        assert error(client.post("/api/keys", json={"scopes": ["root"]}), 422)["code"] == "validation_error"
        assert error(client.post("/api/keys", json={"scopes": []}), 422)["code"] == "validation_error"

    with deck.client(secret) as app:
        refused_invoke(app)  # the key works: the request got past authentication
        assert error(app.get("/api/prompts"), 403)["code"] == "forbidden"

    with deck.client() as client:
        revoked = ok(client.post(f"/api/keys/{created['id']}/revoke"))
        assert revoked["revoked_at"] is not None and "api_key" not in revoked
        again = ok(client.post(f"/api/keys/{created['id']}/revoke"))
        assert again["revoked_at"] == revoked["revoked_at"]
        assert error(client.post("/api/keys/nope/revoke"), 404)["code"] == "not_found"

    with deck.client(secret) as app:
        response = app.post("/v1/prompt/invoke", json={"deployment": "summarize", "inputs": {}})
        assert response.status_code == 401
    with httpx.Client(base_url=deck.url) as anonymous:
        assert error(anonymous.get("/api/keys"), 401)["code"] == "unauthorized"


# ── runs ─────────────────────────────────────────────────────────────────────


def page_through(client: httpx.Client, limit: int, cursor: str | None = None) -> list[list[dict[str, Any]]]:
    pages = []
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        body = ok(client.get("/api/runs", params=params))
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(body["data"]) == limit


def test_runs_newest_first_with_cursor_pagination(deck: Deck) -> None:
    with deck.client() as client:
        for i in range(7):
            refused_invoke(client, metadata={"i": i})
        deck.flush()

        everything = ok(client.get("/api/runs", params={"limit": 200}))
        assert everything["next_cursor"] is None
        runs = everything["data"]
        assert [r["metadata"]["i"] for r in runs] == list(range(6, -1, -1))
        assert [r["created_at"] for r in runs] == sorted((r["created_at"] for r in runs), reverse=True)
        assert all(r["status"] == "error" and r["error_code"] == "validation_error" for r in runs)
        assert all(r["version_number"] == 1 and r["variant"] == "default" for r in runs)

        pages = page_through(client, 3)
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [r["id"] for p in pages for r in p] == [r["id"] for r in runs]

        # new runs arrive while a caller pages: what it was handed stays right
        first = ok(client.get("/api/runs", params={"limit": 3}))
        for i in range(7, 9):
            refused_invoke(client, metadata={"i": i})
        deck.flush()
        rest = page_through(client, 3, first["next_cursor"])
        seen = [r["id"] for r in first["data"]] + [r["id"] for p in rest for r in p]
        assert seen == [r["id"] for r in runs]

        fresh = page_through(client, 3)
        assert [r["metadata"]["i"] for p in fresh for r in p] == list(range(8, -1, -1))

        assert (
            error(client.get("/api/runs", params={"cursor": "not-a-cursor"}), 422)["code"]
            == "validation_error"
        )
        assert error(client.get("/api/runs", params={"limit": 0}), 422)["code"] == "validation_error"


def test_one_run_by_id_and_by_request_id(deck: Deck) -> None:
    with deck.client() as client:
        response = client.post(
            "/v1/prompt/invoke", json={"deployment": "summarize", "inputs": {}, "user": "u-1"}
        )
        assert response.status_code == 422
        (run,) = deck.runs()
        assert run["end_user"] == "u-1" and run["dialect"] == "fetchhive"
        by_id = ok(client.get(f"/api/runs/{run['id']}"))
        by_request_id = ok(client.get(f"/api/runs/{run['request_id']}"))
        assert by_id == by_request_id == {**run, "feedback": []}  # the detail adds the run's feedback
        assert error(client.get("/api/runs/req_nope"), 404)["code"] == "not_found"


# ── push (prompts as code) ───────────────────────────────────────────────────


def test_push_is_idempotent_and_moves_variants(deck: Deck) -> None:
    with deck.client() as client:
        seeded = ok(client.post("/api/push", json=yaml.safe_load(EXAMPLE)))
        assert seeded["changed"] is False and seeded["version"] == 1

        doc = document("greet", "Hello {{name}}", {"greet": {"default": "latest"}})
        first = ok(client.post("/api/push", json=doc))
        assert first == {
            "prompt": "greet",
            "prompt_created": True,
            "version": 1,
            "version_created": True,
            "variants": [
                {
                    "deployment": "greet",
                    "variant": "default",
                    "version": 1,
                    "changed": True,
                    "from_version": None,
                    "follows_latest": False,
                    "check": ANY,  # the release check's report
                }
            ],
            "changed": True,
        }
        second = ok(client.post("/api/push", json=doc))
        assert second["changed"] is False
        assert (second["prompt_created"], second["version_created"], second["version"]) == (False, False, 1)
        assert second["variants"] == [
            {
                "deployment": "greet",
                "variant": "default",
                "version": 1,
                "changed": False,
                "from_version": 1,
                "follows_latest": False,
                "check": ANY,  # the release check's report
            }
        ]

        edited = document("greet", "Hi there {{name}}", {"greet": {"default": "latest"}})
        third = ok(client.post("/api/push", json=edited))
        assert third["changed"] is True and third["version_created"] is True and third["version"] == 2
        assert third["variants"][0] == {
            "deployment": "greet",
            "variant": "default",
            "version": 2,
            "changed": True,
            "from_version": 1,
            "follows_latest": False,
            "check": ANY,  # the release check's report
        }

        rollback = document("greet", "Hi there {{name}}", {"greet": {"default": 1, "beta": "latest"}})
        fourth = ok(client.post("/api/push", json=rollback))
        assert fourth["version_created"] is False and fourth["changed"] is True
        assert fourth["variants"] == [
            {
                "deployment": "greet",
                "variant": "default",
                "version": 1,
                "changed": True,
                "from_version": 2,
                "follows_latest": False,
                "check": ANY,  # the release check's report
            },
            {
                "deployment": "greet",
                "variant": "beta",
                "version": 2,
                "changed": True,
                "from_version": None,
                "follows_latest": False,
                "check": ANY,  # the release check's report
            },
        ]
        assert ok(client.post("/api/push", json=rollback))["changed"] is False

        deployment = ok(client.get("/api/deployments/greet"))
        assert {n: v["version"] for n, v in deployment["variants"].items()} == {"beta": 2, "default": 1}
        assert [v["number"] for v in ok(client.get("/api/prompts/greet/versions"))["data"]] == [1, 2]

        refused_invoke(client, "greet")
        refused_invoke(client, "greet", variant="beta")
    assert [(r["variant"], r["version_number"]) for r in deck.runs()] == [("beta", 2), ("default", 1)]


def test_push_refuses_an_invalid_document(deck: Deck) -> None:
    with deck.client() as client:
        bad = document("greet", "Hi", {"greet": {"default": "newest"}})
        bad["messages"][0]["role"] = "robot"
        problem = error(client.post("/api/push", json=bad), 422)
        assert "messages[0].role" in problem["message"]
        assert error(client.post("/api/push", json={**document("greet", "Hi"), "prompt": "Bad Slug"}), 422)
        unknown = error(
            client.post("/api/push", json=document("greet", "Hi", {"greet": {"default": 4}})), 404
        )
        assert "no version 4" in unknown["message"]
        assert [p["slug"] for p in ok(client.get("/api/prompts"))["data"]] == ["summarize"]


def test_push_conflict_applies_nothing(deck: Deck) -> None:
    with deck.client() as client:
        # a new prompt aimed at a deployment that serves another prompt
        taken = document("other", "Other {{text}}", {"summarize": {"default": "latest"}})
        conflict = error(client.post("/api/push", json=taken), 409)
        assert conflict["code"] == "conflict" and "summarize" in conflict["message"]
        assert error(client.get("/api/prompts/other"), 404)
        assert [p["slug"] for p in ok(client.get("/api/prompts"))["data"]] == ["summarize"]

        # an existing prompt with new content: no version is added by the failed push
        ok(client.post("/api/push", json=document("other", "Other {{text}}")))
        edited = document(
            "other", "Changed {{text}}", {"fresh": {"default": "latest"}, "summarize": {"default": "latest"}}
        )
        error(client.post("/api/push", json=edited), 409)
        assert [v["number"] for v in ok(client.get("/api/prompts/other/versions"))["data"]] == [1]
        assert error(client.get("/api/deployments/fresh"), 404)
        assert [d["name"] for d in ok(client.get("/api/deployments"))["data"]] == ["summarize"]
        summarize = ok(client.get("/api/deployments/summarize"))
        assert {v["prompt"] for v in summarize["variants"].values()} == {"summarize"}


# ── OpenAPI ──────────────────────────────────────────────────────────────────


def test_openapi_lists_the_admin_and_fetch_hive_paths(sqlite_deck: Deck) -> None:
    schema = ok(httpx.get(sqlite_deck.url + "/openapi.json"))
    paths = schema["paths"]
    for path, method in [
        ("/api/prompts", "post"),
        ("/api/prompts/{slug}/versions", "post"),
        ("/api/prompts/{slug}/versions/{number}", "get"),
        ("/api/deployments", "post"),
        ("/api/deployments/{name}/variants/{variant}", "put"),
        ("/api/push", "post"),
        ("/api/keys", "post"),
        ("/api/keys/{key_id}/revoke", "post"),
        ("/api/runs", "get"),
        ("/api/runs/{run_id}", "get"),
        ("/v1/prompt/invoke", "post"),
        ("/v1/invoke", "post"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is missing from /openapi.json"
    invoke = paths["/v1/prompt/invoke"]["post"]
    assert invoke["requestBody"]["content"]["application/json"]["schema"]["required"] == ["deployment"]


def test_read_scope_reads_but_cannot_change(sqlite_deck: Deck) -> None:
    """A `read` key lists prompts, deployments and runs; changes and key listings need `admin`."""
    with sqlite_deck.client() as admin:
        secret = admin.post("/api/keys", json={"name": "dashboard", "scopes": ["read"]}).json()["api_key"]
    with sqlite_deck.client(secret) as reader:
        assert reader.get("/api/prompts").status_code == 200
        assert reader.get("/api/deployments/summarize").status_code == 200
        assert reader.get("/api/runs").status_code == 200
        denied = reader.post("/api/prompts", json={"slug": "nope"})
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        assert reader.get("/api/keys").status_code == 403


def test_key_is_checked_before_the_body_is_read(sqlite_deck: Deck) -> None:
    """No key and a malformed body: the answer is about the key (401), not the body."""
    with httpx.Client(base_url=sqlite_deck.url) as anonymous:
        response = anonymous.post(
            "/api/prompts", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401
    with sqlite_deck.client() as admin:
        bad = admin.post("/api/prompts", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 422 and bad.json()["error"]["message"] == "the request body is not valid JSON"
