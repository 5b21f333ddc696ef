"""The release check on every path that changes what a variant serves (docs/releases.md), on
SQLite and PostgreSQL: a save that deploys nothing; a `latest` follower after a save, a push, a
split and an import, each refused (409 with the report) and then forced with a reason that the
history keeps; the preview, which moves nothing; and `push --dry-run`'s plan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from promptdeck.store.workspace_archive import pack, unpack
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script, deck_over
from tests.support.invoking import invoke
from tests.test_cli import cli_env, fails, succeeds

upstream = fake_openai.upstream
REASON = "every caller sends mood from today"


@pytest.fixture
def live(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A server on each database; prompt `fast` (version 1 needs `text` and `audience`), its
    deployment `fast` pinned to it (a file's `latest` resolves to a number)."""
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        yield deck


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response) -> dict[str, Any]:
    """The 409 of a change the check refuses; its details are the release report."""
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "unsafe_promotion" and "force" in error["message"], error
    return dict(error["details"])


def moody(content: str = "In a {{mood}} mood, for {{audience}}: {{text}}") -> dict[str, Any]:
    """A version of `fast` that newly requires `mood`, which no caller has sent."""
    document = fake_openai.prompt_document("fast", "openai/fast")
    del document["deploy"], document["prompt"]
    document["messages"][1]["content"] = content
    document["inputs"]["mood"] = {"type": "string", "required": True}
    return document


def served(client: httpx.Client, deployment: str, variant: str = "default") -> int:
    return int(ok(client.get(f"/api/deployments/{deployment}"))["variants"][variant]["version"])


def history(client: httpx.Client, deployment: str, variant: str = "default") -> list[dict[str, Any]]:
    return list(ok(client.get(f"/api/deployments/{deployment}/variants/{variant}/history"))["data"])


def deployment(client: httpx.Client, name: str, target: int | str = 1, *, calls: int = 2) -> None:
    """A deployment of `fast` whose default variant points at `target`, called `calls` times."""
    body = {"name": name, "prompt": "fast", "variants": {"default": target}}
    ok(client.post("/api/deployments", json=body), 201)
    for _ in range(calls):
        invoke(client, name, expect=200)


def mood_risk(report: dict[str, Any], runs: int = 2) -> None:
    assert report["inputs"] == [
        {"input": "mood", "problem": "missing", "runs_affected": runs, "runs_checked": runs}
    ], report
    assert report["gates"] == [] and report["safe"] is False


def test_a_save_deploys_nothing_and_the_preview_moves_nothing(live: Deck) -> None:
    with live.client() as client:
        deployment(client, "prod")
        live.flush()
        saved = ok(client.post("/api/prompts/fast/versions", json=moody()), 201)
        assert saved["number"] == 2 and saved["held"] == []
        assert {"deployment": "prod", "variant": "default", "version": 1} in [
            {k: s[k] for k in ("deployment", "variant", "version")} for s in saved["serving"]
        ]
        assert served(client, "prod") == 1
        invoke(client, "prod", expect=200)  # callers still get version 1
        live.flush()
        assert live.runs(1)[0]["version_number"] == 1

        check = "/api/deployments/prod/variants/default/check"
        report = ok(client.post(check, json={"version": 2}))
        assert (report["deployment"], report["version"], report["from_version"]) == ("prod", 2, 1)
        mood_risk(report, 3)
        assert served(client, "prod") == 1 and len(history(client, "prod")) == 1
        assert ok(client.post(check, json={"version": 1})) == {
            "deployment": "prod",
            "variant": "default",
            "version": 1,
            "from_version": 1,
            "inputs": [],
            "gates": [],
            "safe": True,
        }
        assert client.post(check, json={"version": 9}).status_code == 404
        assert (
            client.post("/api/deployments/nope/variants/default/check", json={"version": 1}).status_code
            == 404
        )


def test_a_follower_the_check_refuses_is_held_by_a_save_then_deployed_by_a_forced_move(live: Deck) -> None:
    """A save never fails because of a follower: the version is saved, the refused follower stays
    where it is (still following), and the answer reports it; deploying it needs force."""
    with live.client() as client:
        deployment(client, "follows", "latest")
        deployment(client, "quiet", "latest", calls=0)  # no recent callers: nothing to judge by
        live.flush()
        saved = ok(client.post("/api/prompts/fast/versions", json=moody()), 201)
        [held] = saved["held"]
        assert (held["deployment"], held["variant"], held["version"], held["from_version"]) == (
            "follows",
            "default",
            2,
            1,
        )
        mood_risk(held)
        assert served(client, "follows") == 1 and served(client, "quiet") == 2
        variant = ok(client.get("/api/deployments/follows"))["variants"]["default"]
        assert variant["config"]["follows_latest"] is True  # still following: the next safe save moves it

        mood_risk(refused(client.put("/api/deployments/follows/variants/default", json={"version": 2})))
        body = {"version": "latest", "force": True, "reason": REASON}
        ok(client.put("/api/deployments/follows/variants/default", json=body))
        assert served(client, "follows") == 2
        assert history(client, "follows")[0]["note"] == f"forced: {REASON}"


def test_a_push_whose_moves_the_check_refuses_changes_nothing_unless_forced(live: Deck) -> None:
    """A push is all or nothing: a refused move (its own, or another deployment's `latest`
    follower) fails it whole. Its dry run lists every move with the check's report."""
    with live.client() as client:
        deployment(client, "prod")
        deployment(client, "follows", "latest")
        live.flush()
        document = {**moody(), "prompt": "fast", "deploy": {"prod": {"default": "latest"}}}

        plan = ok(client.post("/api/push", json=document, params={"dry_run": "true"}))
        moves = {(m["deployment"], m["variant"]): m for m in plan["variants"]}
        assert set(moves) == {("prod", "default"), ("follows", "default")}
        assert [m["follows_latest"] for m in plan["variants"]] == [False, True]
        for move in moves.values():
            assert (move["from_version"], move["version"], move["changed"]) == (1, 2, True)
            mood_risk(move["check"])

        mood_risk(refused(client.post("/api/push", json=document)))
        assert len(ok(client.get("/api/prompts/fast/versions"))["data"]) == 1  # nothing was saved
        assert served(client, "prod") == 1 and served(client, "follows") == 1

        without_reason = client.post("/api/push", json=document, params={"force": "true"})
        assert without_reason.status_code == 422, without_reason.text
        pushed = ok(client.post("/api/push", json=document, params={"force": "true", "reason": REASON}))
        assert pushed["version"] == 2 and all(m["changed"] for m in pushed["variants"])
        assert served(client, "prod") == 2 and served(client, "follows") == 2
        assert history(client, "prod")[0]["note"] == f"push (forced: {REASON})"
        assert history(client, "follows")[0]["note"] == f"latest (forced: {REASON})"


def test_a_split_that_adds_a_version_the_check_refuses_needs_force(live: Deck) -> None:
    with live.client() as client:
        deployment(client, "prod")
        live.flush()
        ok(client.post("/api/prompts/fast/versions", json=moody()), 201)
        split = {"split": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
        config = "/api/deployments/prod/variants/default/config"
        mood_risk(refused(client.put(config, json=split)))
        assert "split" not in ok(client.get("/api/deployments/prod"))["variants"]["default"]["config"]

        ok(client.put(config, json=split, params={"force": "true", "reason": REASON}))
        assert ok(client.get("/api/deployments/prod"))["variants"]["default"]["config"]["split"]
        entry = history(client, "prod")[0]
        assert (entry["from_version"], entry["to_version"]) == (1, 1)
        assert entry["note"] == f"split: version 2 added (forced: {REASON})"
        ok(client.put(config, json=split))  # the same split again adds nothing: nothing to check
        # a rollback skips the entry that changed no version: there is still nothing to undo
        assert client.post("/api/deployments/prod/variants/default/rollback").status_code == 409


def test_an_import_the_check_refuses_needs_force(live: Deck) -> None:
    """An import's variants are judged by the recent runs of a deployment of that name: runs
    outlive a deleted deployment, so re-importing an older archive can break its callers."""
    with live.client() as client:
        deployment(client, "legacy")
        live.flush()
        ok(client.post("/api/prompts/fast/versions", json=moody()), 201)
        data = unpack(ok_bytes(client.get("/api/export")))
        assert client.delete("/api/deployments/legacy").status_code == 204
        [prompt] = [p for p in data["prompts"] if p["slug"] == "fast"]
        prompt["slug"] = "fast-imported"
        data["prompts"] = [prompt]
        [legacy] = [d for d in data["deployments"] if d["name"] == "legacy"]
        legacy["prompt"] = "fast-imported"
        legacy["variants"]["default"]["version"] = 2
        data["deployments"] = [legacy]
        archive = pack(data)

        headers = {"Content-Type": "application/gzip"}
        report = refused(client.post("/api/import", content=archive, headers=headers))
        mood_risk(report)
        assert report["from_version"] is None
        assert client.get("/api/deployments/legacy").status_code == 404  # nothing was imported

        params = {"force": "true", "reason": REASON}
        ok(client.post("/api/import", content=archive, headers=headers, params=params))
        assert served(client, "legacy") == 2
        assert history(client, "legacy")[0]["note"] == f"import (forced: {REASON})"


def ok_bytes(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    return response.content


def test_push_dry_run_lists_every_move_and_the_checks_verdict_then_a_forced_push(
    live: Deck, tmp_path: Path
) -> None:
    """`promptdeck push --dry-run` prints each move a push would make, another deployment's
    follower too, with the check's verdict; the push is refused, and `--force --reason` makes it."""
    with live.client() as client:
        deployment(client, "prod")
        deployment(client, "follows", "latest")
        live.flush()
    file = tmp_path / "fast.yaml"
    document = {**moody(), "prompt": "fast", "deploy": {"prod": {"default": "latest"}}}
    file.write_text(yaml.safe_dump(document))
    env = cli_env(tmp_path / "cli", PROMPTDECK_URL=live.url, PROMPTDECK_API_KEY=live.admin_key)

    said = succeeds(env, "push", "--dry-run", str(file)).splitlines()
    missing = "mood is required but 2 of the last 2 runs did not send it"
    assert said == [
        "prompt fast: exists",
        "version 2: will be created",
        "prod@default: will move from version 1 to 2, REFUSED by the release check",
        f"  {missing}",
        "follows@default: will move from version 1 to 2 (follows latest), REFUSED by the release check",
        f"  {missing}",
        "dry run: nothing was changed",
    ]
    assert missing in fails(env, "push", str(file))
    said = succeeds(env, "push", "--force", "--reason", REASON, str(file)).splitlines()
    assert (
        "prod@default -> version 2: moved" in said
        and "follows@default -> version 2: moved (follows latest)" in said
    )
    with live.client() as client:
        assert served(client, "prod") == 2 and served(client, "follows") == 2


def test_a_gated_push_saves_the_version_first_and_moves_nothing_when_a_gate_fails(
    live: Deck, upstream: FakeOpenAI
) -> None:
    """A gate judges a saved version, so a push that moves a gated variant to the version it
    creates saves that version first; a failed gate then refuses the move (409 with the gate's
    failure) and nothing moves. Deploying it anyway takes a reason."""
    upstream.scripts["bad"] = Script(chunks=("nope",))
    with live.client() as client:
        deployment(client, "prod", calls=0)
        cases = [{"inputs": {"text": "t", "audience": "a"}, "expected": text} for text in ("Hello", "world")]
        body = {"name": "golden", "evaluators": [{"type": "contains", "name": "says it"}], "cases": cases}
        ok(client.post("/api/prompts/fast/datasets", json=body), 201)
        gates = [{"name": "quality", "dataset": "golden", "min_pass_rate": 0.9}]
        ok(client.put("/api/deployments/prod/variants/default/config", json={"gates": gates}))

        document = fake_openai.prompt_document("fast", "openai/bad")
        document["deploy"] = {"prod": {"default": "latest"}}
        answer = client.post("/api/push", json=document)
        report = refused(answer)
        assert "were saved; nothing moved" in answer.json()["error"]["message"]
        [failure] = report["gates"]
        assert (failure["gate"], failure["dataset"], report["version"]) == ("quality", "golden", 2)
        assert report["inputs"] == [] and report["safe"] is False
        assert len(ok(client.get("/api/prompts/fast/versions"))["data"]) == 2  # saved, not deployed
        assert served(client, "prod") == 1

        document["deploy"] = {"prod": {"default": 2}}  # the file names the saved version
        refused(client.post("/api/push", json=document))
        ok(client.post("/api/push", json=document, params={"force": "true", "reason": REASON}))
        assert served(client, "prod") == 2
        assert history(client, "prod")[0]["note"] == f"push (forced: {REASON})"
