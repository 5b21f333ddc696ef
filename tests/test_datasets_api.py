"""Datasets over the admin API of a live server, on SQLite and PostgreSQL: a prompt's datasets and
cases, JSONL and CSV uploads (a bad file refused whole with every problem), the JSONL export,
Add to dataset from a logged run, and another workspace's key seeing nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS
from tests.support.invoking import invoke

upstream, db_deck = fake_openai.upstream, fake_openai.db_deck
BASE = "/api/prompts/fast/datasets"


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_datasets_and_cases_over_the_api(db_deck: Deck) -> None:
    with db_deck.client() as client:
        created = ok(
            client.post(
                BASE,
                json={
                    "name": "smoke",
                    "description": "first checks",
                    "evaluators": [{"type": "contains", "value": "Hello"}],
                    "cases": [{"inputs": INPUTS, "expected": "Hello, world!", "tags": ["greeting"]}],
                },
            ),
            201,
        )
        assert created["name"] == "smoke" and created["case_count"] == 1 and created["prompt"] == "fast"
        added = ok(client.post(f"{BASE}/smoke/cases", json={"cases": [{"inputs": {"text": "b"}}]}), 201)[
            "data"
        ]
        (case,) = added
        edited = ok(
            client.put(f"{BASE}/smoke/cases/{case['id']}", json={"inputs": {"text": "c"}, "tags": ["x"]})
        )
        assert edited["id"] == case["id"] and edited["inputs"] == {"text": "c"} and edited["tags"] == ["x"]
        cases = ok(client.get(f"{BASE}/smoke/cases"))["data"]
        assert [c["inputs"] for c in cases] == [INPUTS, {"text": "c"}]
        ok(client.delete(f"{BASE}/smoke/cases/{case['id']}"), 204)
        assert len(ok(client.get(f"{BASE}/smoke/cases"))["data"]) == 1

        renamed = ok(client.patch(f"{BASE}/smoke", json={"name": "regressions", "description": "d"}))
        assert (renamed["name"], renamed["description"], renamed["case_count"]) == ("regressions", "d", 1)
        assert [d["name"] for d in ok(client.get(BASE))["data"]] == ["regressions"]
        missing = client.get(f"{BASE}/smoke")
        assert missing.status_code == 404 and missing.json()["error"]["details"] == {
            "datasets": ["regressions"]
        }
        assert client.post(BASE, json={"name": "regressions"}).status_code == 409
        bad = client.post(
            f"{BASE}/regressions/cases", json={"cases": [{"inputs": {}, "chat_history": [{"role": "x"}]}]}
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"

        ok(client.put(f"{BASE}/regressions/cases", json={"cases": [{"inputs": {"text": "only"}}]}))
        export = client.get(f"{BASE}/regressions/export")
        assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
        assert export.text == '{"inputs":{"text":"only"}}\n'
        ok(client.delete(f"{BASE}/regressions"), 204)
        assert ok(client.get(BASE))["data"] == []


def test_a_bad_upload_lists_every_problem_and_imports_nothing(db_deck: Deck) -> None:
    with db_deck.client() as client:
        ok(client.post(BASE, json={"name": "uploaded", "cases": [{"inputs": {"text": "kept"}}]}), 201)
        bad = "\n".join(
            ['{"inputs": {"text": "fine"}}', '{"inputs": []}', "{oops", '{"inputs": {}, "extra": 1}']
        )
        refused = client.post(
            f"{BASE}/uploaded/upload", json={"format": "jsonl", "content": bad, "replace": True}
        )
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "validation_error" and "3 problems" in error["message"]
        assert [p.split(":")[0] for p in error["details"]] == ["line 2", "line 3", "line 4"]
        assert error["details"][0] == "line 2: `inputs` must be an object"
        assert [c["inputs"] for c in ok(client.get(f"{BASE}/uploaded/cases"))["data"]] == [{"text": "kept"}]

        csv = "text,audience,expected,tags\nhello,kids,HI,a;b\nbye,adults,,\n"
        imported = ok(client.post(f"{BASE}/uploaded/upload", json={"format": "csv", "content": csv}))
        assert imported["imported"] == 2 and imported["dataset"]["case_count"] == 3
        cases = ok(client.get(f"{BASE}/uploaded/cases"))["data"]
        assert cases[1] | {"id": ""} == {
            "id": "",
            "inputs": {"text": "hello", "audience": "kids"},
            "expected": "HI",
            "chat_history": [],
            "tags": ["a", "b"],
            "source_run_id": None,
        }
        replaced = ok(
            client.post(
                f"{BASE}/uploaded/upload",
                json={"format": "jsonl", "content": '{"inputs": {}}', "replace": True},
            )
        )
        assert replaced["dataset"]["case_count"] == 1


def test_add_to_dataset_from_a_run(db_deck: Deck) -> None:
    answer = invoke(db_deck, "fast", expect=200).json()
    db_deck.flush()
    with db_deck.client() as client:
        run = ok(client.get(f"/api/runs/{answer['request_id']}"))
        path = f"/api/runs/{run['id']}/add-to-dataset"
        missing = client.post(path, json={"dataset": "from-logs"})
        assert missing.status_code == 404 and "no datasets yet" in missing.json()["error"]["message"]
        made = ok(client.post(path, json={"dataset": "from-logs", "expected": "output", "create": True}), 201)
        assert made["dataset"]["name"] == "from-logs" and made["dataset"]["prompt"] == "fast"
        assert made["case"]["inputs"] == INPUTS and made["case"]["expected"] == "Hello, world!"
        assert made["case"]["source_run_id"] == run["id"]
        again = ok(client.post(path, json={"dataset": "from-logs", "expected": None}), 201)
        assert again["case"]["expected"] is None and again["dataset"]["case_count"] == 2
        ok(client.post(BASE, json={"name": "other"}), 201)
        wrong = client.post(path, json={"dataset": "nope"})
        assert wrong.status_code == 404 and wrong.json()["error"]["details"] == {
            "datasets": ["from-logs", "other"]
        }


def test_another_workspace_cannot_see_a_dataset(db_deck: Deck) -> None:
    with db_deck.client() as client:
        ok(client.post(BASE, json={"name": "private", "cases": [{"inputs": {"text": "secret"}}]}), 201)
    access = db_deck.services.access

    async def other_workspace() -> str:
        workspace_id = await access.create_workspace("other team")
        _, key = await access.create_key(workspace_id, "their admin", ["admin"])
        return key

    theirs = db_deck.live.call(other_workspace)
    with db_deck.client(theirs) as client:
        assert client.get(BASE).status_code == 404
        assert client.get(f"{BASE}/private/cases").status_code == 404
        assert client.get(f"{BASE}/private/export").status_code == 404
    # a read key of this workspace sees it, and cannot change it
    read_key = db_deck.live.call(lambda: access.create_key(db_deck.workspace_id, "reader", ["read"]))[1]
    with db_deck.client(read_key) as client:
        assert [d["name"] for d in ok(client.get(BASE))["data"]] == ["private"]
        assert client.delete(f"{BASE}/private").status_code == 403
