"""`POST /api/playground/run` against a live server: drafts and saved versions run through the
real engine, streamed as neutral SSE events or answered as one JSON object, and logged like any
run — on both databases, over the fake OpenAI upstream (and once on the embedded model)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, deck_over, run_of
from tests.test_tools_end_to_end import TOOL_ANSWER, WEATHER

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

RUN = "/api/playground/run"
LOCAL_MODEL = "local/smollm2-135m-instruct"


@pytest.fixture
def live(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A server on each database with prompt `fast` (version 1, inputs `text` and `audience`,
    model `openai/fast` on the fake upstream) deployed as `fast`."""
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        yield deck


def draft(content: str = "Summarize for {{audience}}: {{text}}", **changes: Any) -> dict[str, Any]:
    """A version like prompt `fast`'s first, with another user message or other parts."""
    document = fake_openai.prompt_document("fast", "openai/fast")
    version = {key: document[key] for key in ("model", "params", "inputs")}
    version["messages"] = [document["messages"][0], {"role": "user", "content": content}]
    return version | changes


def streamed(client: httpx.Client, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of a streamed run, and every line as sent (keep-alive comments included)."""
    with client.stream("POST", RUN, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())
    events = [orjson.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    return events, lines


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The admin error shape, with its status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code and body["error"]["message"]
    return dict(body["error"])


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# ── running ──────────────────────────────────────────────────────────────────


def test_a_streamed_draft_reports_every_event_and_is_logged_like_any_run(
    live: Deck, upstream: FakeOpenAI
) -> None:
    with live.client() as client:
        price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
        assert client.put("/api/prices/openai/fast", json=price).status_code == 200
        events, _ = streamed(client, {"draft": draft(), "prompt": "fast", "inputs": INPUTS})

    assert kinds(events) == ["started", "text", "text", "text", "text", "usage", "finished"]
    started, usage, finished = events[0], events[-2], events[-1]
    assert started["model"] == "openai/fast" and started["provider"] == "openai"
    assert "".join(e["text"] for e in events if e["type"] == "text") == "Hello, world!"
    assert usage == {
        "type": "usage",
        "input_tokens": 11,
        "cached_input_tokens": 0,
        "cache_write_input_tokens": 0,
        "output_tokens": 4,
        "reasoning_tokens": 0,
        "estimated": False,
    }
    assert finished["run_id"] == started["run_id"] and finished["stop_reason"] == "stop"
    assert finished["cost"] == pytest.approx((11 * 1.0 + 4 * 2.0) / 1e6) and finished["price_known"]
    assert 0 < finished["ttft_ms"] <= finished["duration_ms"]
    assert upstream.requests[-1]["messages"][-1] == {
        "role": "user",
        "content": f"Summarize for {INPUTS['audience']}: {INPUTS['text']}",
    }

    run = run_of(live, started["run_id"])
    assert run["request_id"] == started["request_id"]
    assert run["dialect"] == "playground" and run["status"] == "success" and run["streamed"] is True
    assert run["deployment"] == "playground:fast" and run["deployment_id"] is None
    assert run["variant"] is None and run["version_id"] is None and run["version_number"] is None
    assert run["end_user"] == "admin"  # the API key's name; a console member's email when signed in
    assert run["metadata"] == {"source": "playground"}
    assert run["inputs"] == INPUTS and run["output"] == "Hello, world!"
    assert run["input_tokens"] == 11 and run["output_tokens"] == 4 and run["cost"] == finished["cost"]
    assert run["attempts"] and run["attempts"][0]["status"] == "success"

    # The run log's readers take a run without a deployment id or variant in their stride.
    live.flush()
    with live.client() as client:
        by_meta = client.get("/api/runs", params={"meta": "source:playground"}).json()["data"]
        by_name = client.get("/api/runs", params={"deployment": "playground:fast"}).json()["data"]
        assert [r["id"] for r in by_meta] == [r["id"] for r in by_name] == [run["id"]]
        exported = client.get("/api/runs/export", params={"format": "csv"})
        assert exported.status_code == 200 and "playground:fast" in exported.text
        keys = client.get("/api/runs/metadata-keys").json()
        assert "source" in orjson.dumps(keys).decode()
        stats = client.get("/api/deployments/fast/variants/default/stats")
        assert stats.status_code == 200 and stats.json()["data"] == []  # not the deployment's runs


def test_a_saved_version_runs_unstreamed_and_the_run_names_it(live: Deck, upstream: FakeOpenAI) -> None:
    with live.client() as client:
        second = client.post("/api/prompts/fast/versions", json=draft("Explain to {{audience}}: {{text}}"))
        assert second.status_code == 201, second.text
        first = client.get("/api/prompts/fast/versions/1").json()
        answers = {
            number: client.post(
                RUN, json={"prompt": "fast", "version": number, "inputs": INPUTS, "stream": False}
            )
            for number in (1, 2)
        }

    for number, response in answers.items():
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["output"] == "Hello, world!" and body["reasoning"] == "" and body["tool_calls"] == []
        assert body["usage"]["input_tokens"] == 11 and body["usage"]["output_tokens"] == 4
        assert body["stop_reason"] == "stop" and body["provider"] == "openai"
        assert body["duration_ms"] >= body["ttft_ms"] > 0
        run = run_of(live, body["run_id"])
        assert run["deployment"] == "playground:fast" and run["deployment_id"] is None
        assert run["version_number"] == number and run["streamed"] is False
        assert run["metadata"] == {"source": "playground"} and run["end_user"] == "admin"
        said = run["messages"][-1]["content"]
        assert said.startswith("Summarize for" if number == 1 else "Explain to"), said
    assert run_of(live, answers[1].json()["run_id"])["version_id"] == first["id"]


def test_a_draft_of_the_longest_slug_is_logged_under_a_name_the_column_holds(live: Deck) -> None:
    slug = "p" * 100
    with live.client() as client:
        answer = client.post(RUN, json={"draft": draft(), "prompt": slug, "inputs": INPUTS, "stream": False})
    assert answer.status_code == 200, answer.text
    live.flush()  # written, not just waiting in the writer's queue
    with live.client() as client:
        stored = client.get("/api/runs", params={"meta": "source:playground"}).json()["data"]
    assert [r["deployment"] for r in stored] == [("playground:" + slug)[:100]]
    assert stored[0]["id"] == answer.json()["run_id"]


def test_two_versions_streamed_side_by_side_both_complete(live: Deck, upstream: FakeOpenAI) -> None:
    upstream.scripts["fast"] = Script(delay=0.05)  # each answer takes ~0.2 s: the two overlap
    with live.client() as client:
        created = client.post("/api/prompts/fast/versions", json=draft("Explain to {{audience}}: {{text}}"))
        assert created.status_code == 201, created.text
    results: dict[int, list[dict[str, Any]]] = {}
    spans: dict[int, tuple[float, float]] = {}
    ready = threading.Barrier(2)

    def side(number: int) -> None:
        with live.client() as client:
            ready.wait()
            began = time.monotonic()
            results[number], _ = streamed(client, {"prompt": "fast", "version": number, "inputs": INPUTS})
            spans[number] = (began, time.monotonic())

    threads = [threading.Thread(target=side, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert set(results) == {1, 2}
    assert spans[1][0] < spans[2][1] and spans[2][0] < spans[1][1]  # they ran at the same time
    for number, events in results.items():
        assert kinds(events)[0] == "started" and kinds(events)[-1] == "finished"
        assert "".join(e["text"] for e in events if e["type"] == "text") == "Hello, world!"
        run = run_of(live, events[0]["run_id"])
        assert run["status"] == "success" and run["version_number"] == number


def test_the_embedded_model_streams_a_draft(sqlite_deck: Deck) -> None:
    body = {
        "draft": {
            "model": LOCAL_MODEL,
            "messages": [{"role": "user", "content": "Say hello to {{name}}."}],
            "params": {"temperature": 0.0, "max_tokens": 4, "seed": 1},
        },
        "inputs": {"name": "Ada"},
    }
    with sqlite_deck.client() as client:
        events, _ = streamed(client, body)
    assert kinds(events)[0] == "started" and kinds(events)[-1] == "finished", events
    assert events[0]["provider"] == "local" and events[0]["model"] == LOCAL_MODEL
    assert "".join(e["text"] for e in events if e["type"] == "text").strip()
    (usage,) = [e for e in events if e["type"] == "usage"]
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 4
    assert events[-1]["stop_reason"] in ("stop", "length") and events[-1]["cost"] == 0.0
    run = run_of(sqlite_deck, events[0]["run_id"])
    assert run["deployment"] == "playground:draft" and run["provider"] == "local"
    assert run["messages"] == [{"role": "user", "content": "Say hello to Ada."}]


def test_tool_calls_stream_as_events_and_quiet_streams_get_keepalives(
    start_deck: StartDeck, upstream: FakeOpenAI
) -> None:
    upstream.scripts["tools"] = Script(raw=orjson.dumps(TOOL_ANSWER))
    upstream.scripts["slow"] = Script(chunks=("a", "b"), delay=0.35)
    deck = start_deck(keepalive_seconds=0.1)
    with deck.client() as client:
        tools = {"draft": draft(model="openai/tools", tools=[WEATHER]), "inputs": INPUTS}
        events, _ = streamed(client, tools)
        whole = client.post(RUN, json=tools | {"stream": False})
        slow, lines = streamed(client, {"draft": draft(model="openai/slow"), "inputs": INPUTS})

    (call,) = [e for e in events if e["type"] == "tool_call"]
    assert call["name"] == "get_weather" and call["id"] == "call_1"
    assert call["arguments_delta"] == '{"city":"Paris"}'
    assert events[-1]["type"] == "finished" and events[-1]["stop_reason"] == "tool_calls"
    assert whole.status_code == 200, whole.text
    assert whole.json()["tool_calls"] == [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    ]
    assert ": ping" in lines
    assert "".join(e["text"] for e in slow if e["type"] == "text") == "ab"


def test_a_failed_upstream_is_logged_and_reported(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    upstream.scripts["broken"] = Script(status=400)  # not retryable: one attempt
    deck = start_deck()
    body = {"draft": draft(model="openai/broken"), "prompt": "fast", "inputs": INPUTS}
    with deck.client() as client:
        events, _ = streamed(client, body)
        whole = client.post(RUN, json=body | {"stream": False})

    assert kinds(events) == ["started", "error"]
    failure = events[-1]
    assert failure["code"] == "upstream_rejected" and "fake upstream failure" in failure["message"]
    run = run_of(deck, failure["run_id"])
    assert run["status"] == "error" and run["error_code"] == failure["code"]
    assert run["dialect"] == "playground" and run["deployment"] == "playground:fast"

    problem = error(whole, 502, "provider_error")
    assert "fake upstream failure" in problem["message"]
    assert problem["details"]["error_code"] == failure["code"]
    assert run_of(deck, problem["details"]["run_id"])["status"] == "error"


# ── bad input ────────────────────────────────────────────────────────────────


def test_bad_input_is_refused_in_the_admin_error_shape(live: Deck) -> None:
    with live.client() as client:

        def refused(body: Any, status: int = 422, code: str = "validation_error") -> str:
            return str(error(client.post(RUN, json=body), status, code)["message"])

        broken = refused({"draft": draft("{% if %}", template_syntax="jinja2"), "inputs": INPUTS})
        assert broken.startswith("invalid prompt version: messages[1].content: line 1:"), broken
        assert "model: expected 'provider/model'" in refused({"draft": draft(model="fast")})
        assert "names no configured provider" in refused({"draft": draft(model="nope/x"), "inputs": INPUTS})
        missing = refused({"draft": draft(), "prompt": "fast", "inputs": {"text": "x"}})
        assert missing == "missing required input: audience"
        assert "no version 9" in refused({"prompt": "fast", "version": 9}, 404, "not_found")
        assert "nope" in refused({"prompt": "nope", "version": 1}, 404, "not_found")
        assert "not both" in refused({"draft": draft(), "prompt": "fast", "version": 1})
        assert "not neither" in refused({"prompt": "fast", "inputs": INPUTS})
        assert "prompt: required with version" in refused({"version": 1})
        assert "prompt must be" in refused({"draft": draft(), "prompt": "Not A Slug"})
        assert "input" in refused({"draft": draft(), "input": INPUTS})  # a typo is not ignored
        assert "messages" in refused({"draft": {"model": "openai/fast"}})
        not_json = client.post(RUN, content=b"{nope", headers={"Content-Type": "application/json"})
        assert error(not_json, 422, "validation_error")["message"] == "the request body is not valid JSON"
        invoke_only = client.post("/api/keys", json={"name": "app", "scopes": ["invoke", "read"]})
        key = invoke_only.json()["api_key"]

    anonymous = httpx.post(live.url + RUN, json={"draft": draft(), "inputs": INPUTS})
    error(anonymous, 401, "unauthorized")
    with live.client(key) as client:
        assert (
            "'admin'"
            in error(client.post(RUN, json={"prompt": "fast", "version": 1}), 403, "forbidden")["message"]
        )

    # Refused by the engine (a missing input, an unknown provider): logged as failed runs.
    failed = [r for r in live.runs() if r["dialect"] == "playground"]
    assert sorted(r["error_code"] for r in failed) == ["validation_error", "validation_error"]
    assert {r["deployment"] for r in failed} == {"playground:fast", "playground:draft"}
