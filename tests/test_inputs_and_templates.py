"""Typed inputs and templates end to end through the Fetch Hive dialect: a 422 listing every
problem before any provider call, chat history in the run's messages, Jinja2 loops, runaway
templates refused quickly while the server keeps serving, and the prompt's undeclared-variables
setting."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, StartDeck, expect_hive_error, run_of
from tests.support.invoking import invoke

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def deploy(deck: Deck, slug: str, version: dict[str, Any], **prompt: Any) -> None:
    with deck.client() as client:
        ok(client.post("/api/prompts", json={"slug": slug, **prompt}), 201)
        ok(client.post(f"/api/prompts/{slug}/versions", json={"model": "openai/fast", **version}), 201)
        ok(client.post("/api/deployments", json={"name": slug, "prompt": slug}), 201)


def test_a_422_lists_every_problem_before_any_provider_call(
    start_deck: StartDeck, upstream: FakeOpenAI
) -> None:
    deck = start_deck()
    schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    deploy(
        deck,
        "typed",
        {
            "messages": [{"role": "user", "content": "{{ text }} #{{ n }} {{ order.id }}"}],
            "inputs": {"text": "string", "n": "integer", "order": {"type": "json", "schema": schema}},
            "extra_inputs": "forbid",
        },
    )
    before = upstream.count("fast")
    message = expect_hive_error(
        invoke(deck, "typed", {"n": "three", "order": {"id": "x"}, "bogus": True}), 422, "validation_error"
    )
    assert "missing required input: text" in message
    assert "n (expected integer, got str)" in message
    assert "order: schema violation at $.id" in message
    assert "unexpected input (this version forbids extras): bogus" in message
    assert upstream.count("fast") == before


def test_chat_history_is_inserted_into_the_runs_messages(start_deck: StartDeck) -> None:
    deck = start_deck()
    deploy(
        deck,
        "chat",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "{{ history }}"},
                {"role": "user", "content": "{{ question }}"},
            ],
            "inputs": {"history": {"type": "chat_history", "required": False}, "question": "string"},
        },
    )
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    body = ok(invoke(deck, "chat", {"history": history, "question": "And now?"}))
    run = run_of(deck, body["request_id"])
    assert run["messages"] == [
        {"role": "system", "content": "Be brief."},
        *history,
        {"role": "user", "content": "And now?"},
    ]


def test_a_jinja2_loop_renders(start_deck: StartDeck) -> None:
    deck = start_deck()
    deploy(
        deck,
        "loop",
        {
            "template_syntax": "jinja2",
            "messages": [
                {
                    "role": "user",
                    "content": "{% for i in items %}{{ loop.index }}. {{ i | title }}\n{% endfor %}",
                }
            ],
            "inputs": {"items": "json"},
        },
    )
    body = ok(invoke(deck, "loop", {"items": ["apples", "pears"]}))
    assert run_of(deck, body["request_id"])["messages"] == [
        {"role": "user", "content": "1. Apples\n2. Pears\n"}
    ]


def test_a_runaway_jinja2_template_is_refused_quickly_while_the_server_keeps_serving(
    start_deck: StartDeck,
) -> None:
    deck = start_deck()
    deploy(
        deck,
        "runaway",
        {
            "template_syntax": "jinja2",
            "messages": [
                {"role": "system", "content": "ok"},
                {
                    "role": "user",
                    "content": "start\n{% for i in range(100000) %}{% for j in range(100000) %}"
                    "{% endfor %}{% endfor %}",
                },
            ],
        },
    )
    answers: dict[str, Any] = {}

    def runaway() -> None:
        started = time.monotonic()
        answers["response"] = invoke(deck, "runaway", {})
        answers["ended"] = time.monotonic()
        answers["seconds"] = answers["ended"] - started

    worker = threading.Thread(target=runaway)
    worker.start()
    time.sleep(0.1)
    ok(invoke(deck, "fast"))
    # Answered while the template still runs (it takes its 1 s limit): an order, not a time
    # bound, so a loaded machine cannot make it flaky.
    served = time.monotonic()
    assert "ended" not in answers
    worker.join(10)
    assert served < answers["ended"]
    message = expect_hive_error(answers["response"], 422, "validation_error")
    assert answers["seconds"] < 5
    assert "messages[1]: line 2: took longer than" in message
    ok(invoke(deck, "fast"))


def test_template_syntax_errors_are_refused_at_creation(start_deck: StartDeck) -> None:
    deck = start_deck()
    with deck.client() as client:
        ok(client.post("/api/prompts", json={"slug": "broken"}), 201)
        response = client.post(
            "/api/prompts/broken/versions",
            json={
                "model": "openai/fast",
                "template_syntax": "jinja2",
                "messages": [{"role": "user", "content": "a\n{% if %}"}],
            },
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0].startswith("messages[0].content: line 2: ")


def test_undeclared_variables_follow_the_prompts_setting(start_deck: StartDeck) -> None:
    deck = start_deck()
    version = {"model": "openai/fast", "messages": [{"role": "user", "content": "{{ text }}"}]}
    with deck.client() as client:
        created = ok(
            client.post("/api/prompts", json={"slug": "strict", "undeclared_variables": "refuse"}), 201
        )
        assert created["undeclared_variables"] == "refuse"
        refused = client.post("/api/prompts/strict/versions", json=version)
        assert refused.status_code == 422 and "inputs.text: used in the messages" in refused.text
        patched = ok(client.patch("/api/prompts/strict", json={"undeclared_variables": "declare"}))
        assert patched["undeclared_variables"] == "declare"
        made = ok(client.post("/api/prompts/strict/versions", json=version), 201)
        assert made["inputs"] == {"text": {"type": "string", "required": True}}
        bad = client.patch("/api/prompts/strict", json={"undeclared_variables": "sometimes"})
        assert bad.status_code == 422, bad.text


def test_a_prompt_file_sets_undeclared_variables(start_deck: StartDeck) -> None:
    deck = start_deck()
    document = {
        "prompt": "filed",
        "undeclared_variables": "refuse",
        "model": "openai/fast",
        "messages": [{"role": "user", "content": "{{ text }}"}],
    }
    with deck.client() as client:
        refused = client.post("/api/push", json=document)
        assert refused.status_code == 422, refused.text
        assert "inputs.text: used in the messages but not declared" in refused.text
        ok(client.post("/api/push", json={**document, "inputs": {"text": "string"}}))
        assert ok(client.get("/api/prompts/filed"))["undeclared_variables"] == "refuse"
