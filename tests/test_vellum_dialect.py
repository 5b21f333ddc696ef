"""The Vellum dialect on the wire: every bad field gets `{"detail"}` with the right status before
any provider call, external ids are unique, and the stream is NDJSON with empty-line keep-alives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Deck, make_settings, seed
from tests.support import fake_openai
from tests.support.fake_openai import (
    INPUTS,
    FakeOpenAI,
    Script,
    StartDeck,
    deck_over,
    push_prompt,
    sqlite_url,
)
from tests.support.live_server import start_server

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

EXECUTE_PATHS = ("/v1/execute-prompt", "/v1/execute-prompt-stream")
GOOD_INPUTS = [{"type": "STRING", "name": k, "value": v} for k, v in INPUTS.items()]


@pytest.fixture(scope="module")
def quiet() -> Iterator[tuple[Deck, FakeOpenAI]]:
    """One server that is only ever sent bad requests: its upstream must never be called."""
    import tempfile

    with tempfile.TemporaryDirectory() as name, FakeOpenAI() as server:
        directory = Path(name)
        with deck_over(server.url, sqlite_url(directory), directory) as deck:
            yield deck, server


def post(deck: Deck, path: str, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"X-API-KEY": key if key is not None else deck.admin_key, "Content-Type": "application/json"}
    return httpx.post(deck.url + path, content=content, headers={**sent, **headers}, timeout=30)


def expect_detail(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"], body
    for word in words:
        assert word in body["detail"], (word, body["detail"])
    return str(body["detail"])


def execute(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt_deployment_name": "fast", "inputs": GOOD_INPUTS}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def chat(*messages: Any) -> dict[str, Any]:
    return execute(
        inputs=[*GOOD_INPUTS, {"type": "CHAT_HISTORY", "name": "history", "value": list(messages)}]
    )


BAD_EXECUTIONS: list[tuple[str, Any, str]] = [
    ("not json", b"{nope", "not valid JSON"),
    ("empty body", b"", "empty"),
    ("array body", [1], "JSON object"),
    ("inputs missing", execute(inputs=...), "inputs"),
    ("inputs an object", execute(inputs={"text": "x"}), "inputs"),
    ("input not an object", execute(inputs=["x"]), "inputs[0]"),
    ("input without a name", execute(inputs=[{"type": "STRING", "value": "x"}]), "inputs[0].name"),
    ("string input with a number", execute(inputs=[{"type": "STRING", "name": "text", "value": 3}]), "text"),
    ("unknown input type", execute(inputs=[{"type": "NUMBER", "name": "n", "value": 3}]), "NUMBER"),
    (
        "image input",
        execute(inputs=[{"type": "IMAGE", "name": "pic", "value": {"src": "http://x/y.png"}}]),
        "inputs[0].value.src (input 'pic'): expected an https URL",
    ),
    (
        "document input",
        execute(inputs=[{"type": "DOCUMENT", "name": "doc", "value": {"src": "vellum:uploaded-file:1"}}]),
        "(input 'doc'): a Vellum uploaded-file reference",
    ),
    ("audio input", execute(inputs=[{"type": "AUDIO", "name": "a", "value": {"src": "x"}}]), "AUDIO"),
    ("video input", execute(inputs=[{"type": "VIDEO", "name": "v", "value": {"src": "x"}}]), "VIDEO"),
    ("input given twice", execute(inputs=[*GOOD_INPUTS, GOOD_INPUTS[0]]), "twice"),
    ("chat history not a list", execute(inputs=[{"type": "CHAT_HISTORY", "name": "h", "value": "hi"}]), "h"),
    ("chat message not an object", chat("hi"), "chat message"),
    ("chat message bad role", chat({"role": "ROBOT", "text": "x"}), "role"),
    ("chat message text not a string", chat({"role": "USER", "text": 5}), "text"),
    ("function message without source", chat({"role": "FUNCTION", "text": "42"}), "source"),
    (
        "function call with string arguments",
        chat(
            {
                "role": "ASSISTANT",
                "content": {"type": "FUNCTION_CALL", "value": {"name": "f", "arguments": "{}"}},
            }
        ),
        "FUNCTION_CALL",
    ),
    (
        "function call from a user",
        chat({"role": "USER", "content": {"type": "FUNCTION_CALL", "value": {"name": "f", "arguments": {}}}}),
        "only ASSISTANT",
    ),
    (
        "image chat content",
        chat({"role": "USER", "content": {"type": "IMAGE", "value": {"src": "x"}}}),
        "content.value.src (input 'history'): expected an https URL",
    ),
    ("both id and name", execute(prompt_deployment_id=str(uuid.uuid4())), "exactly one"),
    ("neither id nor name", execute(prompt_deployment_name=...), "exactly one"),
    ("id not a uuid", execute(prompt_deployment_name=..., prompt_deployment_id="fast"), "UUID"),
    ("id a number", execute(prompt_deployment_name=..., prompt_deployment_id=7), "UUID"),
    ("name a number", execute(prompt_deployment_name=7), "prompt_deployment_name"),
    ("name empty", execute(prompt_deployment_name=""), "prompt_deployment_name"),
    ("release tag a number", execute(release_tag=3), "release_tag"),
    ("release tag empty", execute(release_tag=""), "release_tag"),
    ("external id a number", execute(external_id=3), "external_id"),
    ("external id too long", execute(external_id="x" * 201), "external_id"),
    ("expand_meta a list", execute(expand_meta=["usage"]), "expand_meta"),
    ("expand_meta value a string", execute(expand_meta={"usage": "yes"}), "usage"),
    ("raw_overrides a string", execute(raw_overrides="x"), "raw_overrides"),
    ("raw_overrides a list", execute(raw_overrides=[]), "raw_overrides"),
    ("raw_overrides body a list", execute(raw_overrides={"body": [1]}), "raw_overrides.body"),
    ("raw_overrides headers numbers", execute(raw_overrides={"headers": {"a": 1}}), "raw_overrides.headers"),
    ("raw_overrides url not http", execute(raw_overrides={"url": "file:///etc"}), "raw_overrides.url"),
    ("expand_raw a string", execute(expand_raw="id"), "expand_raw"),
    ("expand_raw numbers", execute(expand_raw=[1]), "expand_raw"),
    ("metadata a list", execute(metadata=[1]), "metadata"),
    ("missing required input", execute(inputs=GOOD_INPUTS[:1]), "audience"),
    (
        "json input where a string is needed",
        execute(inputs=[GOOD_INPUTS[0], {**GOOD_INPUTS[1], "type": "JSON", "value": 1}]),
        "audience",
    ),
]


@pytest.mark.parametrize("path", EXECUTE_PATHS)
@pytest.mark.parametrize(("case", "body", "word"), BAD_EXECUTIONS, ids=[c[0] for c in BAD_EXECUTIONS])
def test_bad_execute_requests_are_400_before_any_provider_call(
    quiet: tuple[Deck, FakeOpenAI], path: str, case: str, body: Any, word: str
) -> None:
    deck, server = quiet
    expect_detail(post(deck, path, body), 400, word)
    assert server.seen == []


def test_all_problems_are_reported_at_once(quiet: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = quiet
    body = {"inputs": "x", "release_tag": 1, "expand_meta": 2, "metadata": 3}
    detail = expect_detail(post(deck, EXECUTE_PATHS[0], body), 400)
    for field in ("exactly one", "inputs", "release_tag", "expand_meta", "metadata"):
        assert field in detail


UNKNOWN: list[tuple[str, dict[str, Any], str]] = [
    ("unknown deployment name", execute(prompt_deployment_name="nope"), "nope"),
    (
        "unknown deployment id",
        execute(prompt_deployment_name=..., prompt_deployment_id=str(uuid.UUID(int=1))),
        "00000000-0000-0000-0000-000000000001",
    ),
    ("unknown release tag", execute(release_tag="gamma"), "gamma"),
]


@pytest.mark.parametrize("path", EXECUTE_PATHS)
@pytest.mark.parametrize(("case", "body", "word"), UNKNOWN, ids=[c[0] for c in UNKNOWN])
def test_unknown_things_are_404(
    quiet: tuple[Deck, FakeOpenAI], path: str, case: str, body: Any, word: str
) -> None:
    deck, server = quiet
    expect_detail(post(deck, path, body), 404, word)
    assert server.seen == []


@pytest.mark.parametrize(
    "path", [*EXECUTE_PATHS, "/v1/submit-completion-actuals", "/v1/deployments/provider-payload"]
)
def test_keys_are_checked_first_and_refused_with_403(quiet: tuple[Deck, FakeOpenAI], path: str) -> None:
    deck, server = quiet
    assert expect_detail(post(deck, path, b"{nope", key="pd_wrong"), 403) == "Invalid access."
    assert expect_detail(post(deck, path, b"{nope", key=""), 403) == "Invalid access."
    response = httpx.post(
        deck.url + path, content=b"{nope", headers={"X_API_KEY": deck.admin_key}, timeout=30
    )
    expect_detail(response, 400, "not valid JSON")  # the older header passes the key check
    assert server.seen == []


BAD_ACTUALS: list[tuple[str, Any, str]] = [
    ("actuals missing", {"deployment_name": "fast"}, "actuals"),
    ("actuals empty", {"actuals": []}, "actuals"),
    ("actual not an object", {"actuals": ["x"]}, "actuals[0]"),
    ("neither id nor external id", {"actuals": [{"quality": 1}]}, "exactly one of id and external_id"),
    ("both ids", {"actuals": [{"id": "a", "external_id": "b"}]}, "exactly one"),
    ("id a number", {"actuals": [{"id": 5}]}, "actuals[0].id"),
    ("quality above 1", {"actuals": [{"id": "a", "quality": 1.5}]}, "quality"),
    ("quality a string", {"actuals": [{"id": "a", "quality": "good"}]}, "quality"),
    ("quality a boolean", {"actuals": [{"id": "a", "quality": True}]}, "quality"),
    ("text a number", {"actuals": [{"id": "a", "text": 1}]}, "text"),
    ("timestamp not a time", {"actuals": [{"id": "a", "timestamp": "yesterday"}]}, "timestamp"),
    ("metadata a list", {"actuals": [{"id": "a", "metadata": []}]}, "metadata"),
    ("deployment id not a uuid", {"deployment_id": "x", "actuals": [{"id": "a"}]}, "deployment_id"),
]


@pytest.mark.parametrize(("case", "body", "word"), BAD_ACTUALS, ids=[c[0] for c in BAD_ACTUALS])
def test_bad_actuals_are_400(quiet: tuple[Deck, FakeOpenAI], case: str, body: Any, word: str) -> None:
    deck, _ = quiet
    expect_detail(post(deck, "/v1/submit-completion-actuals", body), 400, word)


def test_actuals_for_unknown_executions_are_404(quiet: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = quiet
    for actual in ({"id": str(uuid.uuid4())}, {"id": "not-a-run"}, {"external_id": "never"}):
        expect_detail(post(deck, "/v1/submit-completion-actuals", {"actuals": [actual]}), 404, "no execution")


def test_bad_provider_payload_requests(quiet: tuple[Deck, FakeOpenAI]) -> None:
    deck, server = quiet
    path = "/v1/deployments/provider-payload"
    expect_detail(
        post(deck, path, {"inputs": GOOD_INPUTS}), 400, "exactly one of deployment_id and deployment_name"
    )
    expect_detail(post(deck, path, {"deployment_name": "fast", "inputs": GOOD_INPUTS[:1]}), 400, "audience")
    expect_detail(post(deck, path, {"deployment_name": "nope", "inputs": []}), 404, "nope")
    expect_detail(post(deck, path, {"deployment_name": "fast", "inputs": [], "release_tag": "zz"}), 404, "zz")
    assert server.seen == []


def test_unknown_execution_id_on_the_run_api_is_404(quiet: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = quiet
    with deck.client() as admin:
        assert admin.get(f"/api/runs/{uuid.uuid4().hex}").status_code == 404


def test_duplicate_external_ids_are_refused_before_the_provider(
    upstream: FakeOpenAI, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The writer holds runs for 5 s, so the first run is still pending when the duplicates come.
    settings = make_settings(
        sqlite_url(tmp_path), tmp_path, openai_base_url=upstream.url, writer_flush_seconds=5.0
    )
    workspace_id, key = seed(settings)
    live = start_server(settings)
    request.addfinalizer(live.stop)
    push_prompt(live.url, key, "fast", "openai/fast")
    deck = Deck(live, key, workspace_id)
    first = post(deck, EXECUTE_PATHS[0], execute(external_id="dup-1"))
    assert first.status_code == 200 and first.json()["state"] == "FULFILLED"
    for path in EXECUTE_PATHS:
        expect_detail(post(deck, path, execute(external_id="dup-1")), 400, "dup-1", "already used")
    deck.flush()  # and once it is in the database
    for path in EXECUTE_PATHS:
        expect_detail(post(deck, path, execute(external_id="dup-1")), 400, "dup-1")
    assert upstream.count("fast") == 1
    assert post(deck, EXECUTE_PATHS[0], execute(external_id="dup-2")).status_code == 200


def test_ndjson_framing_with_keepalive_lines(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    deck = start_deck(keepalive_seconds=0.1)
    upstream.scripts["fast"] = Script(chunks=("a", "b"), delay=0.35)
    body = execute(expand_meta={"latency": True, "model_name": True})
    headers = {"X-API-KEY": deck.admin_key}
    with httpx.stream(
        "POST", deck.url + EXECUTE_PATHS[1], json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        raw = response.read()
    assert raw.endswith(b"}\n") and b"data:" not in raw and b"[DONE]" not in raw
    lines = raw.split(b"\n")[:-1]
    assert b"" in lines  # keep-alive: an empty line
    events = [orjson.loads(line) for line in lines if line]
    assert [e["state"] for e in events] == ["INITIATED", "STREAMING", "STREAMING", "FULFILLED"]
    assert all(line == orjson.dumps(orjson.loads(line)) for line in lines if line)  # compact, one per line
    execution_id = events[0]["execution_id"]
    assert str(uuid.UUID(execution_id)) == execution_id and {e["execution_id"] for e in events} == {
        execution_id
    }
    assert events[0]["meta"] == {"model_name": "openai/fast", "latency": events[0]["meta"]["latency"]}
    assert events[1] == {
        "state": "STREAMING",
        "execution_id": execution_id,
        "output": {"type": "STRING", "value": "a"},
        "output_index": 0,
    }
    assert events[-1]["outputs"] == [{"type": "STRING", "value": "ab"}]
    assert set(events[-1]["meta"]) == {"latency"} and isinstance(events[-1]["meta"]["latency"], int)


def test_non_streamed_answer_without_meta_is_minimal(start_deck: StartDeck) -> None:
    deck = start_deck()
    answer = post(deck, EXECUTE_PATHS[0], execute(release_tag="LATEST")).json()
    assert set(answer) == {"execution_id", "state", "outputs", "raw"}
    assert answer["outputs"] == [{"type": "STRING", "value": "Hello, world!"}] and answer["raw"] == {}


def test_a_stream_cut_upstream_ends_in_rejected(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    deck = start_deck()
    upstream.scripts["fast"] = Script(cut_after=2)
    headers = {"X-API-KEY": deck.admin_key}
    with httpx.stream(
        "POST", deck.url + EXECUTE_PATHS[1], json=execute(), headers=headers, timeout=30
    ) as response:
        lines = [orjson.loads(line) for line in response.iter_lines() if line]
    assert [e["state"] for e in lines] == ["INITIATED", "STREAMING", "STREAMING", "REJECTED"]
    assert lines[-1]["error"]["code"] == "PROVIDER_ERROR" and lines[-1]["error"]["message"]


def test_expand_raw_returns_the_named_keys_of_the_providers_answer(start_deck: StartDeck) -> None:
    """The fake upstream answers in OpenAI's documented `chat.completion` format; `raw` holds the
    keys asked for that it has, and nothing else."""
    deck = start_deck()
    answer = post(deck, EXECUTE_PATHS[0], execute(expand_raw=["id", "object", "usage", "no_such_key"])).json()
    assert answer["state"] == "FULFILLED"
    assert answer["raw"] == {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }
    assert post(deck, EXECUTE_PATHS[0], execute()).json()["raw"] == {}
