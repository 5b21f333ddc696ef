"""Evaluation runs over real HTTP against a live server and the fake upstream: results stored and
runs tagged, cancel, re-run, compare (pass→fail first), a variant's gates refusing a move, and an
evaluation on the embedded model. SQLite and PostgreSQL where it stores anything."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from promptdeck.domain.runs import utcnow
from promptdeck.store.tables import evaluations
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.live_server import start_server

upstream, db_deck, start_deck = fake_openai.upstream, fake_openai.db_deck, fake_openai.start_deck

INPUTS = {"text": "a long text", "audience": "children"}
CONTAINS_EXPECTED = [{"type": "contains", "name": "says it"}]


def new_version(client: httpx.Client, model: str, prompt: str = "fast") -> int:
    """Save a version of `prompt` like its first, answered by `model`; its number."""
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You summarize text in one sentence."},
            {"role": "user", "content": "Summarize for {{audience}}: {{text}}"},
        ],
        "inputs": {"text": {"type": "string"}, "audience": {"type": "string"}},
    }
    response = client.post(f"/api/prompts/{prompt}/versions", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["number"])


def make_dataset(client: httpx.Client, expected: list[str], name: str = "golden") -> None:
    cases = [{"inputs": INPUTS, "expected": text} for text in expected]
    body = {"name": name, "evaluators": CONTAINS_EXPECTED, "cases": cases}
    response = client.post("/api/prompts/fast/datasets", json=body)
    assert response.status_code == 201, response.text


def start(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/prompts/fast/evaluations", json={"dataset": "golden", **body})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] in ("queued", "running") and answer["total"] >= 1
    return dict(answer)


def finished(client: httpx.Client, evaluation_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/api/evaluations/{evaluation_id}").json()
        if answer["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return dict(answer)
        time.sleep(0.05)


def admin_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}, error
    return str(error["message"])


def test_an_evaluation_stores_every_case_and_tags_its_runs(db_deck: Deck, upstream: FakeOpenAI) -> None:
    with db_deck.client() as client:
        make_dataset(client, ["Hello", "world", "nope"])
        client.post(
            "/api/prompts/fast/datasets/golden/cases",
            json={
                "cases": [
                    {
                        "inputs": INPUTS,
                        "expected": "Hello",
                        "chat_history": [{"role": "user", "content": "and?"}],
                    }
                ]
            },
        ).raise_for_status()
        evaluation = finished(client, start(client, version=1)["id"])
        assert evaluation["status"] == "done", evaluation
        assert (evaluation["completed"], evaluation["total"], evaluation["progress"]) == (4, 4, 1.0)
        assert evaluation["target"] == {"version": 1} and evaluation["version"] == 1
        assert evaluation["dataset"] == "golden" and evaluation["evaluators"] == CONTAINS_EXPECTED
        summary = evaluation["summary"]
        assert (summary["cases"], summary["passed"], summary["failed"], summary["errored"]) == (4, 3, 1, 0)
        assert summary["pass_rate"] == 0.75 and summary["evaluators"]["says it"]["pass_rate"] == 0.75
        assert summary["input_tokens"] == 44 and summary["latency_p95_ms"] is not None

        results = client.get(f"/api/evaluations/{evaluation['id']}/results").json()["data"]
        assert [r["position"] for r in results] == [1, 2, 3, 4]
        assert [r["status"] for r in results] == ["passed", "passed", "failed", "passed"]
        assert all(
            r["output"] == "Hello, world!" and r["run_id"] and r["input_tokens"] == 11 for r in results
        )
        assert results[2]["scores"] == [
            {"evaluator": "says it", "score": 0.0, "passed": False, "error": None}
        ]

        listed = client.get("/api/prompts/fast/evaluations").json()["data"]
        assert [e["id"] for e in listed] == [evaluation["id"]]

    runs = [r for r in db_deck.runs() if (r.get("metadata") or {}).get("evaluation") == evaluation["id"]]
    assert sorted(r["id"] for r in runs) == sorted(r["run_id"] for r in results)
    with db_deck.client() as client:
        tagged = client.get("/api/runs", params={"meta": f"evaluation:{evaluation['id']}"}).json()["data"]
    assert sorted(r["id"] for r in tagged) == sorted(r["id"] for r in runs)
    assert {r["dialect"] for r in runs} == {"evaluation"} and {r["version_number"] for r in runs} == {1}
    with_history = [
        seen for seen in upstream.requests if seen["messages"][-1] == {"role": "user", "content": "and?"}
    ]
    assert len(with_history) == 1


def test_bad_requests_are_answered_in_the_admin_error_shape(db_deck: Deck) -> None:
    with db_deck.client() as client:
        make_dataset(client, ["Hello"])
        post = client.post
        assert "golden2" in admin_error(
            post("/api/prompts/fast/evaluations", json={"dataset": "golden2", "version": 1}), 404
        )
        both = {"dataset": "golden", "version": 1, "deployment": "fast", "variant": "default"}
        assert "one of them" in admin_error(post("/api/prompts/fast/evaluations", json=both), 422)
        assert admin_error(
            post("/api/prompts/fast/evaluations", json={"dataset": "golden", "version": 9}), 404
        )
        bad = {"dataset": "golden", "version": 1, "evaluators": [{"type": "regex"}]}
        assert "evaluators[0]" in admin_error(post("/api/prompts/fast/evaluations", json=bad), 422)
        too_many = {"dataset": "golden", "version": 1, "concurrency": 33}
        admin_error(post("/api/prompts/fast/evaluations", json=too_many), 422)
        admin_error(client.get("/api/evaluations/nope"), 404)
        admin_error(client.get("/api/evaluations/compare", params={"ids": "one"}), 422)


def test_compare_shows_pass_to_fail_first_and_a_rerun_repeats_the_target(
    db_deck: Deck, upstream: FakeOpenAI
) -> None:
    upstream.scripts["bad"] = Script(chunks=("nope",))
    with db_deck.client() as client:
        make_dataset(client, ["nope", "Hello", "world"])
        bad = new_version(client, "openai/bad")
        first = finished(client, start(client, deployment="fast", variant="default")["id"])
        assert first["target"] == {"deployment": "fast", "variant": "default", "version": 1}
        second = finished(client, start(client, version=bad, concurrency=2)["id"])
        assert (first["summary"]["passed"], second["summary"]["passed"]) == (2, 1)

        compared = client.get(
            "/api/evaluations/compare", params={"ids": f"{first['id']},{second['id']}"}
        ).json()
        assert compared["dataset"] == "golden"
        assert [e["id"] for e in compared["evaluations"]] == [first["id"], second["id"]]
        assert [e["pass_rate"] for e in compared["evaluations"]] == [2 / 3, 1 / 3]
        assert [(c["position"], c["change"]) for c in compared["cases"]] == [
            (2, "regressed"),
            (3, "regressed"),
            (1, "fixed"),
        ]
        assert compared["changes"] == {"regressed": 2, "changed": 0, "fixed": 1, "same": 0}
        assert compared["cases"][0]["results"][1]["output"] == "nope"

        again = client.post(f"/api/evaluations/{first['id']}/rerun")
        assert again.status_code == 202, again.text
        rerun = finished(client, again.json()["id"])
        assert rerun["id"] != first["id"] and rerun["target"] == first["target"]
        assert rerun["summary"]["pass_rate"] == first["summary"]["pass_rate"]


def test_a_cancelled_evaluation_keeps_what_finished_and_stops(db_deck: Deck, upstream: FakeOpenAI) -> None:
    upstream.scripts["slow"] = Script(delay=0.4)
    with db_deck.client() as client:
        make_dataset(client, ["Hello"] * 20)
        slow = new_version(client, "openai/slow")
        evaluation = start(client, version=slow, concurrency=2)
        deadline = time.monotonic() + 10
        while client.get(f"/api/evaluations/{evaluation['id']}").json()["completed"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cancelled = client.post(f"/api/evaluations/{evaluation['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        done = cancelled.json()["completed"]
        assert 2 <= done < 20
        results = client.get(f"/api/evaluations/{evaluation['id']}/results").json()["data"]
        assert len(results) == done
        assert "already ended" in admin_error(client.post(f"/api/evaluations/{evaluation['id']}/cancel"), 409)
        time.sleep(0.6)
        assert upstream.count("slow") < 20


def test_a_variants_gate_refuses_a_version_until_one_passes(db_deck: Deck, upstream: FakeOpenAI) -> None:
    upstream.scripts["bad"] = Script(chunks=("nope",))
    with db_deck.client() as client:
        make_dataset(client, ["Hello", "Hello", "world"])
        bad = new_version(client, "openai/bad")
        gates = [{"name": "quality", "dataset": "golden", "min_pass_rate": 0.9, "no_regressions": True}]
        config = client.put("/api/deployments/fast/variants/default/config", json={"gates": gates})
        assert config.status_code == 200, config.text

        checked = client.post("/api/deployments/fast/variants/default/gates/check", json={"version": bad})
        (failure,) = checked.json()["failures"]
        assert failure["gate"] == "quality" and failure["dataset"] == "golden"
        assert failure["pass_rate"] == 0.0 and failure["regressed_cases"] == [1, 2, 3]
        assert "0% of the cases passed" in failure["problem"] and "version 1" in failure["problem"]
        ran = client.get("/api/prompts/fast/evaluations").json()["data"]
        assert sorted(e["version"] for e in ran) == [1, bad]  # the gate ran both itself
        assert {e["actor"] for e in ran} == {"release gate"}

        moved = client.put("/api/deployments/fast/variants/default", json={"version": bad})
        assert "quality" in admin_error(moved, 409)
        assert client.get("/api/deployments/fast").json()["variants"]["default"]["version"] == 1

        good = new_version(client, "openai/fast")
        checked = client.post("/api/deployments/fast/variants/default/gates/check", json={"version": good})
        assert checked.json()["failures"] == []
        assert len(client.get("/api/prompts/fast/evaluations").json()["data"]) == 3  # v1's was reused
        moved = client.put("/api/deployments/fast/variants/default", json={"version": good})
        assert moved.status_code == 200, moved.text

        forced = {"version": bad, "force": True, "reason": "known regression, fixed tomorrow"}
        moved = client.put("/api/deployments/fast/variants/default", json=forced)
        assert moved.status_code == 200, moved.text


def test_an_evaluation_runs_offline_on_the_embedded_model(sqlite_deck: Deck) -> None:
    with sqlite_deck.client() as client:
        cases = [{"inputs": {"text": "The cat sat on the mat all day."}}, {"inputs": {"text": "Rain fell."}}]
        body = {"name": "smoke", "evaluators": [{"type": "length", "min_length": 1}], "cases": cases}
        client.post("/api/prompts/summarize/datasets", json=body).raise_for_status()
        response = client.post("/api/prompts/summarize/evaluations", json={"dataset": "smoke", "version": 1})
        assert response.status_code == 202, response.text
        evaluation = finished(client, response.json()["id"], timeout=120)
        assert evaluation["status"] == "done" and evaluation["summary"]["passed"] == 2, evaluation
        results = client.get(f"/api/evaluations/{evaluation['id']}/results").json()["data"]
        assert all(r["output"] and r["error"] is None for r in results)


def test_an_evaluation_cut_short_by_a_shutdown_is_failed_after_it(
    start_deck: fake_openai.StartDeck, upstream: FakeOpenAI
) -> None:
    upstream.scripts["slow"] = Script(delay=0.5)
    deck = start_deck()
    with deck.client() as client:
        make_dataset(client, ["Hello"] * 10)
        evaluation = start(client, version=new_version(client, "openai/slow"), concurrency=1)
    deck.live.stop()
    again = start_server(deck.live.settings)
    try:
        with httpx.Client(
            base_url=again.url, headers={"Authorization": f"Bearer {deck.admin_key}"}
        ) as client:
            ended = client.get(f"/api/evaluations/{evaluation['id']}").json()
    finally:
        again.stop()
    assert ended["status"] == "failed" and "interrupted" in ended["error"], ended
    assert ended["completed"] < 10


def test_a_replica_leaves_another_replicas_evaluation_alone_and_fails_a_silent_one(
    start_deck: fake_openai.StartDeck, upstream: FakeOpenAI
) -> None:
    """Two replicas on one database: the second, starting while the first runs an evaluation,
    leaves it running (its heartbeat is fresh); an evaluation whose replica died (no heartbeat
    for SILENT_SECONDS) is marked failed by the replicas still alive."""
    upstream.scripts["slow"] = Script(delay=0.5)
    deck = start_deck()
    with deck.client() as client:
        make_dataset(client, ["Hello"] * 8)
        evaluation = start(client, version=new_version(client, "openai/slow"), concurrency=1)
    other = start_server(deck.live.settings)  # a second replica, starting while it runs
    headers = {"Authorization": f"Bearer {deck.admin_key}"}
    try:
        with httpx.Client(base_url=other.url, headers=headers) as client:
            seen = client.get(f"/api/evaluations/{evaluation['id']}").json()
            assert seen["status"] == "running" and seen["error"] is None, seen

            async def orphan() -> str:
                """A copy of the running evaluation whose replica went silent two minutes ago."""
                db = other.services.db
                async with db.begin() as conn:
                    row = (
                        await conn.execute(sa.select(evaluations).where(evaluations.c.id == evaluation["id"]))
                    ).one()
                    values = dict(row._mapping) | {
                        "id": "0" * 32,
                        "heartbeat_at": utcnow() - timedelta(minutes=2),
                    }
                    await conn.execute(evaluations.insert().values(**values))
                await other.services.evaluations._sweep()
                return "0" * 32

            lost = client.get(f"/api/evaluations/{other.call(orphan)}").json()
            assert lost["status"] == "failed" and "interrupted" in lost["error"], lost
            still = client.get(f"/api/evaluations/{evaluation['id']}").json()
            assert still["status"] == "running", still
    finally:
        other.stop()
    with deck.client() as client:
        assert finished(client, evaluation["id"])["status"] == "done"


def test_a_draft_is_evaluated_unsaved_and_a_refused_call_is_an_errored_case(
    db_deck: Deck, upstream: FakeOpenAI
) -> None:
    upstream.scripts["draft"] = Script(chunks=("Hello from the draft",))
    with db_deck.client() as client:
        make_dataset(client, ["Hello"])
        client.post(
            "/api/prompts/fast/datasets/golden/cases", json={"cases": [{"inputs": {"text": "no audience"}}]}
        ).raise_for_status()
        draft = {
            "model": "openai/draft",
            "messages": [{"role": "user", "content": "Summarize for {{audience}}: {{text}}"}],
        }
        evaluation = finished(client, start(client, draft=draft)["id"])
        assert evaluation["status"] == "done" and evaluation["version"] is None
        assert evaluation["target"]["draft"]["model"] == "openai/draft"
        first, refused = client.get(f"/api/evaluations/{evaluation['id']}/results").json()["data"]
        assert first["status"] == "passed" and first["output"] == "Hello from the draft"
        assert refused["status"] == "errored" and "audience" in refused["error"] and refused["run_id"] is None
        assert [p["number"] for p in client.get("/api/prompts/fast").json()["versions"]] == [
            1
        ]  # nothing saved

        again = finished(client, client.post(f"/api/evaluations/{evaluation['id']}/rerun").json()["id"])
        assert again["target"] == evaluation["target"] and again["summary"]["errored"] == 1
