"""Versions and variants over their lifetime: diffs, move history and rollback, variants that
follow `latest`, promotions checked against callers' recent inputs, and server-side A/B splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptdeck.domain.reliability import SplitArm
from promptdeck.domain.traffic_split import choose, point
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script, deck_over
from tests.support.invoking import invoke

upstream = fake_openai.upstream


@pytest.fixture
def live(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A server on each database whose `fast` deployment (variants `default` and `beta`, both
    pushed as `latest`, so pinned to 1) is answered by the fake upstream; prompt `fast` has
    version 1."""
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        yield deck


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


def version(content: str = "Summarize for {{audience}}: {{text}}", **extra: Any) -> dict[str, Any]:
    return {
        "model": "openai/fast",
        "params": {"temperature": 0.2, "max_tokens": 64},
        "messages": [
            {"role": "system", "content": "You summarize text in one sentence."},
            {"role": "user", "content": content},
        ],
        "inputs": {
            "text": {"type": "string", "required": True},
            "audience": {"type": "string", "required": True},
        },
        **extra,
    }


def variants_of(client: httpx.Client, deployment: str = "fast") -> dict[str, int]:
    found = ok(client.get(f"/api/deployments/{deployment}"))["variants"]
    return {name: v["version"] for name, v in found.items()}


def history(client: httpx.Client, variant: str = "default") -> list[dict[str, Any]]:
    return list(ok(client.get(f"/api/deployments/fast/variants/{variant}/history"))["data"])


# ── diff ─────────────────────────────────────────────────────────────────────────


def test_diff_between_two_versions_lists_every_changed_part(deck: Deck) -> None:
    with deck.client() as client:
        ok(client.post("/api/prompts", json={"slug": "d"}), 201)
        ok(client.post("/api/prompts/d/versions", json=version()), 201)
        tool = {"name": "lookup", "description": "", "parameters": {"type": "object"}}
        changed = version(
            "Summarize for {{audience}} in a {{tone}} tone:\n{{text}}",
            model="openai/other",
            params={"temperature": 0.7, "max_tokens": 64},
            tools=[tool],
            tool_choice="auto",
            response_format={"type": "json_object"},
        )
        changed["inputs"]["tone"] = {"type": "string", "required": False, "default": "calm"}
        ok(client.post("/api/prompts/d/versions", json=changed), 201)

        diff = ok(client.get("/api/prompts/d/diff", params={"from": 1, "to": 2}))
        assert (diff["prompt"], diff["from"], diff["to"], diff["identical"]) == ("d", 1, 2, False)
        text = diff["diff"]
        assert text.startswith("--- d@1\n+++ d@2\n")
        for line in (
            "-model: openai/fast",
            "+model: openai/other",
            "-  temperature: 0.2",
            "+  temperature: 0.7",
            "-    Summarize for {{audience}}: {{text}}",
            "+    Summarize for {{audience}} in a {{tone}} tone:",
            "+    {{text}}",
            '+  tone: {"default":"calm","required":false,"type":"string"}',
            '+tool_choice: "auto"',
            '+response_format: {"type":"json_object"}',
        ):
            assert line in text.splitlines(), (line, text)
        assert "+tools: " in text
        parts = {c["part"]: c for c in diff["changes"]}
        assert set(parts) == {
            "model",
            "params.temperature",
            "inputs.tone",
            "messages[1]",
            "tools",
            "tool_choice",
            "response_format",
        }
        assert parts["model"] == {
            "part": "model",
            "change": "changed",
            "from": "openai/fast",
            "to": "openai/other",
        }
        assert parts["inputs.tone"]["change"] == "added" and parts["inputs.tone"]["from"] is None
        assert parts["tools"] == {"part": "tools", "change": "added", "from": None, "to": [tool]}
        assert parts["messages[1]"]["to"]["content"].endswith("tone:\n{{text}}")

        backwards = ok(client.get("/api/prompts/d/diff", params={"from": 2, "to": 1}))
        assert {c["part"]: c["change"] for c in backwards["changes"]}["tools"] == "removed"
        same = ok(client.get("/api/prompts/d/diff", params={"from": 2, "to": 2}))
        assert same["identical"] is True and same["changes"] == [] and same["diff"] == ""

        assert "no version 9" in error(client.get("/api/prompts/d/diff?from=1&to=9"), 404)["message"]
        assert error(client.get("/api/prompts/nope/diff?from=1&to=2"), 404)["code"] == "not_found"
        assert error(client.get("/api/prompts/d/diff?from=1"), 422)["code"] == "validation_error"


# ── history and rollback ───────────────────────────────────────────────────────


def test_history_and_rollback(live: Deck) -> None:
    with live.client() as client:
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 1, "note": "pin"}))
        ok(client.post("/api/prompts/fast/versions", json=version("Two: {{audience}} {{text}}")), 201)
        ok(client.post("/api/prompts/fast/versions", json=version("Three: {{audience}} {{text}}")), 201)
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 3, "note": "ship 3"}))
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 2}))

        moves = history(client)
        assert [(m["from_version"], m["to_version"], m["note"]) for m in moves] == [
            (3, 2, ""),
            (1, 3, "ship 3"),
            (None, 1, "push"),
        ]
        assert {m["actor"] for m in moves} == {"admin"}  # the name of the key that moved it
        assert moves[0]["created_at"] >= moves[1]["created_at"] >= moves[2]["created_at"]

        invoke(client)  # cached …
        rolled = ok(client.post("/api/deployments/fast/variants/default/rollback", json={"note": "bad"}))
        assert rolled["variants"]["default"]["version"] == 3
        newest = history(client)[0]
        assert (newest["from_version"], newest["to_version"]) == (2, 3)
        assert newest["note"] == "rollback from version 2: bad" and newest["actor"] == "admin"
        ok(invoke(client))  # … and the rollback is served at once
        assert live.runs()[0]["version_number"] == 3

        # a rollback is a move, so a second one undoes the first; no body is needed
        assert (
            ok(client.post("/api/deployments/fast/variants/default/rollback"))["variants"]["default"][
                "version"
            ]
            == 2
        )
        assert len(history(client)) == 5

        ok(client.put("/api/deployments/fast/variants/fresh", json={"version": 1}))
        nothing = error(client.post("/api/deployments/fast/variants/fresh/rollback", json={}), 409)
        assert nothing["code"] == "conflict" and "no earlier version" in nothing["message"]
        assert error(client.post("/api/deployments/fast/variants/nope/rollback"), 404)["code"] == "not_found"
        assert error(client.get("/api/deployments/nope/variants/default/history"), 404)["code"] == "not_found"


# ── latest ───────────────────────────────────────────────────────────────────────


def test_variants_pointed_at_latest_follow_new_versions(live: Deck) -> None:
    with live.client() as client:
        config = ok(client.get("/api/deployments/fast"))["variants"]["default"]["config"]
        assert "follows_latest" not in config  # a file's "latest" resolves to a number: pinned
        for name in ("default", "beta"):  # following is an explicit choice
            ok(client.put(f"/api/deployments/fast/variants/{name}", json={"version": "latest"}))
        copy = {"name": "copy", "prompt": "fast", "variants": {"default": "latest"}}
        ok(client.post("/api/deployments", json=copy), 201)  # follows, as asked
        ok(
            client.post("/api/deployments", json={"name": "pinned", "prompt": "fast", "variants": {"a": 1}}),
            201,
        )
        ok(client.post("/api/deployments", json={"name": "newest", "prompt": "fast"}), 201)  # v1, pinned
        ok(invoke(client))  # cache the deployment

        ok(client.post("/api/prompts/fast/versions", json=version("Two: {{audience}} {{text}}")), 201)
        assert variants_of(client) == {"default": 2, "beta": 2}
        assert variants_of(client, "copy") == {"default": 2}
        assert variants_of(client, "pinned") == {"a": 1}
        assert variants_of(client, "newest") == {"default": 1}  # saving deploys nothing to it
        newest = history(client)[0]
        assert (newest["from_version"], newest["to_version"], newest["note"]) == (1, 2, "latest")
        ok(invoke(client))  # the new version is served at once
        assert live.runs()[0]["version_number"] == 2

        # an explicit number stops following; "latest" starts it again
        moved = ok(client.put("/api/deployments/fast/variants/beta", json={"version": 2}))
        assert "follows_latest" not in moved["variants"]["beta"]["config"]
        ok(client.post("/api/prompts/fast/versions", json=version("Three: {{audience}} {{text}}")), 201)
        assert variants_of(client) == {"default": 3, "beta": 2}
        followed = ok(client.put("/api/deployments/fast/variants/beta", json={"version": "latest"}))
        assert followed["variants"]["beta"]["version"] == 3
        assert followed["variants"]["beta"]["config"]["follows_latest"] is True

        # setting a variant's reliability config keeps it following
        ok(client.put("/api/deployments/fast/variants/beta/config", json={"retries": {"max_attempts": 1}}))
        # a push that changes the content moves every follower, its own variants as "push"
        pushed = fake_openai.prompt_document("fast", "openai/fast", ("default",))
        pushed["messages"][1]["content"] = "Four: {{audience}} {{text}}"
        report = ok(client.post("/api/push", json=pushed))
        assert report["version"] == 4 and report["variants"][0]["changed"] is True
        assert variants_of(client) == {"default": 4, "beta": 4}
        assert variants_of(client, "copy") == {"default": 4}
        assert history(client)[0]["note"] == "push"
        assert history(client, "beta")[0]["note"] == "latest"
        following = ok(client.get("/api/deployments/fast"))["variants"]
        assert "follows_latest" not in following["default"]["config"]  # the file pinned it
        assert following["beta"]["config"]["follows_latest"] is True
        assert (
            ok(client.get("/api/deployments/fast"))["variants"]["beta"]["config"]["retries"]["max_attempts"]
            == 1
        )


# ── safe promotion ───────────────────────────────────────────────────────────────


def test_a_promotion_that_would_break_recent_callers_is_refused_unless_forced(live: Deck) -> None:
    with live.client() as client:
        for name in ("default", "beta"):  # pinned, so new versions do not move them
            ok(client.put(f"/api/deployments/fast/variants/{name}", json={"version": 1}))
        for _ in range(3):
            ok(invoke(client))
        assert invoke(client, inputs={"text": "no audience"}).status_code == 422  # refused, but still a run
        live.flush()

        risky = version("{{tone}} for {{audience}}: {{text}}")
        risky["inputs"]["tone"] = {"type": "string", "required": True}
        risky["inputs"]["audience"] = {"type": "integer", "required": True}
        ok(client.post("/api/prompts/fast/versions", json=risky), 201)  # version 2
        safe = version("Optional {{extra}}: {{audience}} {{text}}")
        safe["inputs"]["extra"] = {"type": "string", "required": False}
        ok(client.post("/api/prompts/fast/versions", json=safe), 201)  # version 3

        refused = error(client.put("/api/deployments/fast/variants/default", json={"version": 2}), 409)
        assert refused["code"] == "unsafe_promotion"
        assert "tone" in refused["message"] and "force" in refused["message"]
        report = {r["input"]: r for r in refused["details"]["inputs"]}
        assert refused["details"]["version"] == 2
        assert report["tone"] == {
            "input": "tone",
            "problem": "missing",
            "runs_affected": 4,
            "runs_checked": 4,
        }
        assert report["audience"] == {  # already required: only the type change counts
            "input": "audience",
            "problem": "type_changed",
            "from": "string",
            "to": "integer",
            "runs_affected": 3,  # the run without it sent nothing that could misfit
            "runs_checked": 4,
        }
        assert variants_of(client)["default"] == 1

        typed = version()
        typed["inputs"]["audience"] = {"type": "integer", "required": True}
        ok(client.post("/api/prompts/fast/versions", json=typed), 201)  # version 4
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 3}))  # safe: allowed
        retyped = error(client.put("/api/deployments/fast/variants/default", json={"version": 4}), 409)
        assert [(r["input"], r["problem"], r["runs_affected"]) for r in retyped["details"]["inputs"]] == [
            ("audience", "type_changed", 3)
        ]
        no_reason = error(
            client.put("/api/deployments/fast/variants/default", json={"version": 2, "force": True}), 422
        )
        assert "reason" in no_reason["message"]

        forced = client.put(
            "/api/deployments/fast/variants/default",
            json={"version": 2, "force": True, "reason": "callers updated today", "note": "v2"},
        )
        assert ok(forced)["variants"]["default"]["version"] == 2
        assert history(client)[0]["note"] == "v2 (forced: callers updated today)"

        # no recent runs: nothing to judge by, so the move is allowed
        assert (
            ok(client.put("/api/deployments/fast/variants/beta", json={"version": 2}))["variants"]["beta"][
                "version"
            ]
            == 2
        )


def test_a_rollback_that_would_break_recent_callers_is_refused_unless_forced(live: Deck) -> None:
    """A rollback changes what a variant serves like any move, so it passes the same check:
    the older version may need an input today's callers stopped sending."""
    with live.client() as client:
        ok(client.post("/api/prompts/fast/versions", json=version()), 201)  # v2: text and audience
        loose = version("Summarize: {{text}}")
        loose["inputs"] = {"text": {"type": "string", "required": True}}
        ok(client.post("/api/prompts/fast/versions", json=loose), 201)  # v3: text only
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 2}))
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 3}))
        for _ in range(3):
            ok(invoke(client, inputs={"text": "no audience"}))
        live.flush()

        refused = error(client.post("/api/deployments/fast/variants/default/rollback", json={}), 409)
        assert refused["code"] == "unsafe_promotion" and "audience" in refused["message"]
        assert refused["details"]["version"] == 2 and variants_of(client)["default"] == 3
        body = {"note": "v3 is wrong", "force": True, "reason": "callers send audience again"}
        rolled = ok(client.post("/api/deployments/fast/variants/default/rollback", json=body))
        assert rolled["variants"]["default"]["version"] == 2
        assert (
            history(client)[0]["note"]
            == "rollback from version 3: v3 is wrong (forced: callers send audience again)"
        )


def test_a_type_change_is_refused_even_when_every_caller_sends_the_input(live: Deck) -> None:
    with live.client() as client:
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 1}))
        ok(invoke(client))
        ok(invoke(client))
        live.flush()
        typed = version()
        typed["inputs"]["audience"] = {"type": "integer", "required": True}
        ok(client.post("/api/prompts/fast/versions", json=typed), 201)
        widened = version()
        widened["inputs"]["audience"] = {"type": "json", "required": True}
        ok(client.post("/api/prompts/fast/versions", json=widened), 201)

        refused = error(client.put("/api/deployments/fast/variants/default", json={"version": 2}), 409)
        assert refused["details"]["inputs"] == [
            {
                "input": "audience",
                "problem": "type_changed",
                "from": "string",
                "to": "integer",
                "runs_affected": 2,
                "runs_checked": 2,
            }
        ]
        assert ok(client.put("/api/deployments/fast/variants/default", json={"version": 3}))  # widening


# ── server-side A/B ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "weights", [(90, 10), (50, 50), (50, 30, 20), (1, 0, 3), (0.25, 0.75)], ids=lambda w: str(w)
)
def test_sticky_assignment_matches_the_weights_over_10000_users(weights: tuple[float, ...]) -> None:
    arms = [SplitArm(number, weight) for number, weight in enumerate(weights, start=1)]
    served = Counter(choose(arms, point("support-bot", "default", f"user-{i}")) for i in range(10_000))
    total = sum(weights)
    for arm in arms:
        assert abs(served[arm.version] / 10_000 - arm.weight / total) <= 0.02, (served, weights)
    assert served.keys() <= {arm.version for arm in arms if arm.weight > 0}


def test_assignment_is_sticky_per_user_and_random_without_one() -> None:
    arms = [SplitArm(1, 50), SplitArm(2, 50)]
    first = {user: choose(arms, point("d", "v", user)) for user in ("ann", "bob", "cy", "dee")}
    for _ in range(5):
        assert {user: choose(arms, point("d", "v", user)) for user in first} == first
    assert 0 <= point("d", "v", "ann") < 1
    assert point("d", "v", "ann") != point("d", "other", "ann")  # each variant splits independently
    anonymous = Counter(choose(arms, point("d", "v", None)) for _ in range(2000))
    assert set(anonymous) == {1, 2} and abs(anonymous[1] / 2000 - 0.5) < 0.05
    assert choose(arms, 0.0) == 1 and choose(arms, 0.999999) == 2


def test_split_config_is_validated(live: Deck) -> None:
    with live.client() as client:
        ok(client.post("/api/prompts/fast/versions", json=version("Two: {{audience}} {{text}}")), 201)
        path = "/api/deployments/fast/variants/default/config"
        ok(client.post("/api/prompts", json={"slug": "other"}), 201)
        ok(client.post("/api/prompts/other/versions", json=version()), 201)
        ok(client.post("/api/prompts/other/versions", json=version("x {{audience}} {{text}}")), 201)
        ok(client.post("/api/prompts/other/versions", json=version("y {{audience}} {{text}}")), 201)

        missing = error(
            client.put(path, json={"split": [{"version": 1, "weight": 1}, {"version": 3, "weight": 1}]}), 404
        )
        assert "no version 3" in missing["message"]  # version 3 exists, but of another prompt
        bad = error(
            client.put(
                path,
                json={
                    "split": [
                        {"version": 1, "weight": -1},
                        {"version": "two", "weight": 1},
                        {"version": 2, "weight": "a lot"},
                        {"version": 1, "weight": 1, "share": 3},
                    ]
                },
            ),
            422,
        )
        for fragment in (
            "split[0].weight",
            "split[1].version",
            "split[2].weight",
            "split[3].share: unknown field",
        ):
            assert any(fragment in problem for problem in bad["details"]), (fragment, bad["details"])
        twice = [{"version": 1, "weight": 1}, {"version": 1, "weight": 2}]
        assert "listed twice" in error(client.put(path, json={"split": twice}), 422)["message"]
        zero = error(
            client.put(path, json={"split": [{"version": 1, "weight": 0}, {"version": 2, "weight": 0}]}), 422
        )
        assert "add up to more than 0" in zero["message"]
        assert error(client.put(path, json={"split": {"1": 50}}), 422)["code"] == "validation_error"

        saved = ok(
            client.put(path, json={"split": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]})
        )
        assert saved["variants"]["default"]["config"]["split"] == [
            {"version": 1, "weight": 90.0},
            {"version": 2, "weight": 10.0},
        ]
        cleared = ok(client.put(path, json={}))
        assert "split" not in cleared["variants"]["default"]["config"]


def test_a_split_variant_serves_each_user_one_version_and_reports_stats_per_version(
    upstream: FakeOpenAI, live: Deck
) -> None:
    upstream.scripts["broken"] = Script(status=400)  # not retryable: one failed attempt per run
    with live.client() as client:
        ok(client.post("/api/prompts/fast/versions", json=version(model="openai/broken")), 201)
        ok(client.put("/api/deployments/fast/variants/default", json={"version": 1}))
        split = {"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
        ok(client.put("/api/deployments/fast/variants/default/config", json=split))

        arms = [SplitArm(1, 50), SplitArm(2, 50)]
        users = [f"user-{i}" for i in range(8)]
        expected = {user: choose(arms, point("fast", "default", user)) for user in users}
        assert set(expected.values()) == {1, 2}
        for _ in range(2):
            for user in users:
                invoke(client, user=user)
        for _ in range(4):
            invoke(client)  # no user: random
        runs = live.runs()
        assert len(runs) == 2 * len(users) + 4
        for run in runs:
            assert run["variant"] == "default"
            if run["end_user"]:
                assert run["version_number"] == expected[run["end_user"]], run
            assert run["status"] == ("error" if run["version_number"] == 2 else "success"), run
        scored = next(r for r in runs if r["version_number"] == 1)
        ok(client.post(f"/api/runs/{scored['id']}/feedback", json={"score": 0.8}), 201)
        ok(client.post(f"/api/runs/{scored['id']}/feedback", json={"thumbs": "up"}), 201)  # no score

        stats = ok(client.get("/api/deployments/fast/variants/default/stats"))
        by_version = {s["version"]: s for s in stats["data"]}
        served = Counter(r["version_number"] for r in runs)
        assert {v: s["runs"] for v, s in by_version.items()} == dict(served)
        assert by_version[1]["error_rate"] == 0.0 and by_version[2]["error_rate"] == 1.0
        assert by_version[1]["mean_feedback_score"] == pytest.approx(0.8)
        assert by_version[1]["feedback_count"] == 1
        assert by_version[2]["mean_feedback_score"] is None
        assert (
            by_version[1]["input_tokens"] == 11 * served[1]
            and by_version[1]["output_tokens"] == 4 * served[1]
        )
        assert by_version[1]["mean_latency_ms"] > 0
        assert by_version[1]["cost"] is None or by_version[1]["cost"] >= 0
        assert error(client.get("/api/deployments/fast/variants/nope/stats"), 404)["code"] == "not_found"


def test_latest_is_the_current_release_in_every_dialect_after_a_rollback(deck: Deck) -> None:
    """`latest` (Vellum's `LATEST`, or no release tag) is the deployment's current release, its
    default variant: after a rollback to v1, a saved v2 reaches no caller in any dialect. It used
    to be the prompt's newest version, so Vellum callers kept getting the v2 a rollback undid."""
    with deck.client() as client:
        version = {
            "model": "local/smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "Hi {{text}}"}],
        }
        assert client.post("/api/prompts/summarize/versions", json=version).status_code == 201
        assert (
            client.put("/api/deployments/summarize/variants/default", json={"version": 1}).status_code == 200
        )
        # A missing input fails before the model is called, but the run records what was resolved.
        calls = [
            ("/v1/prompt/invoke", {"deployment": "summarize", "variant": "latest", "inputs": {}}),
            ("/v1/prompt/invoke", {"deployment": "summarize", "inputs": {}}),
            ("/v1/execute-prompt", {"prompt_deployment_name": "summarize", "inputs": []}),
            (
                "/v1/execute-prompt",
                {"prompt_deployment_name": "summarize", "release_tag": "LATEST", "inputs": []},
            ),
            ("/v1/chat/completions", {"model": "summarize@latest", "messages": []}),
            ("/prompt/summarize/run", {"messages": []}),
        ]
        for path, body in calls:
            headers = {"X-API-KEY": deck.admin_key} if path.startswith("/v1/execute") else {}
            answer = client.post(path, json=body, headers=headers)
            assert 400 <= answer.status_code < 500, (path, answer.text)
    runs = deck.runs()[: len(calls)]
    assert {r["dialect"] for r in runs} == {"fetchhive", "vellum", "openai", "traceport"}
    assert [(r["variant"], r["version_number"]) for r in runs] == [("default", 1)] * len(calls), runs
