"""Issue 17, "the first hour": the right status and the right message for three mistakes a
newcomer makes at once.

* A prompt longer than the model's context is the caller's to shorten: a 400
  `context_length_exceeded` in each dialect's own shape (Vellum: a REJECTED answer with
  INVALID_REQUEST), the same code in a streamed failure event, for the embedded model (the real
  one, with a small context) and for the SaaS providers' own overflow errors.
* A model the server cannot call is refused when it is saved or pushed (422, naming what there
  is), not when it is first invoked.
* A misspelt input is named next to the missing one, with a "did you mean".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from promptdeck.domain.events import Event
from promptdeck.providers.anthropic import AnthropicProvider
from promptdeck.providers.gemini import GeminiProvider
from promptdeck.providers.http_upstream import HttpUpstream
from promptdeck.providers.openai import OpenAIProvider
from tests.conftest import Deck, make_settings, seed
from tests.providers.transcripts import anthropic, gemini, openai_compatible
from tests.support import fake_openai
from tests.support.fake_openai import Script, StartDeck, expect_hive_error, push_prompt, run_of
from tests.support.fake_upstream import FakeUpstream, failure, provider_maker, respond
from tests.support.invoking import INPUTS
from tests.support.live_server import start_server

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck

OVERFLOW = "context_length_exceeded"
LONG_TEXT = "word " * 400  # well over the 128-token context below


# ── context overflow: the embedded model ─────────────────────────────────────


@pytest.fixture
def small_context(tmp_path: Path) -> Iterator[Deck]:
    """The example deployment (`summarize`, the built-in local model) with a 128-token context."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}",
        tmp_path,
        writer_flush_seconds=0.05,
        local_context_tokens=128,
    )
    workspace_id, key = seed(settings)
    live = start_server(settings)
    yield Deck(live, key, workspace_id)
    live.stop()


def data_lines(raw: bytes) -> list[Any]:
    """The JSON of each `data: ` line of an SSE body (`[DONE]` as the string)."""
    lines = [line.removeprefix(b"data: ") for line in raw.split(b"\n") if line.startswith(b"data: ")]
    return [line.decode() if line == b"[DONE]" else orjson.loads(line) for line in lines]


def expect_openai_overflow(status: int, body: dict[str, Any]) -> None:
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == OVERFLOW
    assert "128" in body["error"]["message"]  # says how large the context is


def test_a_prompt_over_the_local_context_is_the_callers_400_in_every_dialect(small_context: Deck) -> None:
    deck = small_context
    inputs = {"text": LONG_TEXT}
    request_ids: list[str] = []
    with deck.client() as client:
        # Fetch Hive: 400 in its envelope, and the code in the streamed error event.
        whole = client.post("/v1/prompt/invoke", json={"deployment": "summarize", "inputs": inputs})
        assert "128" in expect_hive_error(whole, 400, OVERFLOW)
        request_ids.append(whole.json()["request_id"])
        streamed = client.post(
            "/v1/prompt/invoke", json={"deployment": "summarize", "inputs": inputs, "streaming": True}
        )
        *events, done = data_lines(streamed.content)
        assert streamed.status_code == 200 and done == "[DONE]"
        assert [e["type"] for e in events] == ["error"] and events[0]["error_code"] == OVERFLOW
        request_ids.append(events[0]["request_id"])

        # Traceport and OpenAI chat completions: OpenAI's own 400 for it.
        traceport = client.post("/prompt/summarize/run", json={"variables": inputs})
        expect_openai_overflow(traceport.status_code, traceport.json())
        request_ids.append(traceport.headers["x-request-id"])
        chat = {"model": "summarize", "messages": [], "variables": inputs}
        completion = client.post("/v1/chat/completions", json=chat)
        expect_openai_overflow(completion.status_code, completion.json())
        request_ids.append(completion.headers["x-request-id"])
        chunks = client.post("/v1/chat/completions", json={**chat, "stream": True})
        assert chunks.status_code == 200
        (event,) = data_lines(chunks.content)  # one error event, and no [DONE]
        expect_openai_overflow(400, event)

        # Vellum answers a started run with 200: REJECTED, with its code for a caller's error.
        vellum = {
            "prompt_deployment_name": "summarize",
            "inputs": [{"type": "STRING", "name": "text", "value": LONG_TEXT}],
        }
        headers = {"X-API-KEY": deck.admin_key}
        rejected = client.post("/v1/execute-prompt", json=vellum, headers=headers)
        assert rejected.status_code == 200 and rejected.json()["state"] == "REJECTED", rejected.text
        error = rejected.json()["error"]
        assert error["code"] == "INVALID_REQUEST" and error["raw_data"] == {"promptdeck_code": OVERFLOW}
        lines = client.post("/v1/execute-prompt-stream", json=vellum, headers=headers).text.splitlines()
        last = orjson.loads([line for line in lines if line][-1])
        assert last["state"] == "REJECTED" and last["error"]["code"] == "INVALID_REQUEST"

    for request_id in request_ids:
        run = run_of(deck, request_id)
        assert (run["status"], run["error_code"]) == ("error", OVERFLOW)


# ── context overflow: the SaaS providers' own errors ─────────────────────────

OVERFLOWS: dict[str, tuple[type[HttpUpstream], str, Callable[..., Any], Any, str]] = {
    # provider, its API key, how a transcript runs it, its overflow answer (400), its words
    "openai": (
        OpenAIProvider,
        "sk-test",
        openai_compatible.run,
        openai_compatible.openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted "
            "in 130017 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            OVERFLOW,
        ),
        "maximum context length is 128000 tokens",
    ),
    "anthropic": (
        AnthropicProvider,
        anthropic.KEY,
        anthropic.run,
        anthropic.anthropic_error(
            "invalid_request_error", "prompt is too long: 210121 tokens > 200000 maximum"
        ),
        "prompt is too long",
    ),
    "gemini": (
        GeminiProvider,
        gemini.KEY,
        gemini.run,
        gemini.google_error(
            400,
            "The input token count (1270115) exceeds the maximum number of tokens allowed (1048576).",
            "INVALID_ARGUMENT",
        ),
        "exceeds the maximum number of tokens allowed",
    ),
}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("name", OVERFLOWS)
async def test_each_saas_providers_overflow_error_is_context_length_exceeded(name: str, stream: bool) -> None:
    cls, key, run, body, words = OVERFLOWS[name]
    prefix = "/v1" if cls is OpenAIProvider else ""
    async with FakeUpstream(prefix=prefix) as server, provider_maker(cls, server.base_url, key) as make:
        server.play(respond(400, body))
        events: list[Event] = await run(make(), stream=stream)
    failed = failure(events)
    assert failed.code == OVERFLOW and not failed.retryable
    assert words in failed.message


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (
            "openai",
            openai_compatible.openai_error("Invalid 'temperature'", "invalid_request_error", "invalid_value"),
        ),
        ("anthropic", anthropic.anthropic_error("invalid_request_error", "max_tokens: Field required")),
        ("gemini", gemini.google_error(400, "* max_output_tokens: must be positive", "INVALID_ARGUMENT")),
    ],
)
async def test_other_refusals_stay_upstream_rejected(name: str, body: dict[str, Any]) -> None:
    cls, key, run, _, _ = OVERFLOWS[name]
    prefix = "/v1" if cls is OpenAIProvider else ""
    async with FakeUpstream(prefix=prefix) as server, provider_maker(cls, server.base_url, key) as make:
        server.play(respond(400, body))
        events: list[Event] = await run(make(), stream=False)
    assert failure(events).code == "upstream_rejected"


def test_an_upstream_overflow_reaches_the_caller_as_a_400(start_deck: StartDeck, upstream: Any) -> None:
    _, _, _, body, _ = OVERFLOWS["openai"]
    upstream.scripts["small"] = Script(status=400, raw=orjson.dumps(body))
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "small", "openai/small")
    with deck.client() as client:
        whole = client.post("/v1/prompt/invoke", json={"deployment": "small", "inputs": INPUTS})
        traceport = client.post("/prompt/small/run", json={"variables": INPUTS})
    assert "maximum context length" in expect_hive_error(whole, 400, OVERFLOW)
    assert traceport.status_code == 400
    assert traceport.json()["error"]["type"] == "invalid_request_error"
    assert traceport.json()["error"]["code"] == OVERFLOW
    assert run_of(deck, whole.json()["request_id"])["error_code"] == OVERFLOW


# ── models the server cannot call are refused when saved ─────────────────────


def document(model: str, prompt: str = "ghost") -> dict[str, Any]:
    return {
        "prompt": prompt,
        "model": model,
        "messages": [{"role": "user", "content": "Say {{ text }}"}],
        "inputs": {"text": {"type": "string", "required": True}},
        "deploy": {prompt: {"default": "latest"}},
    }


def refusal(response: Any) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return str(error["message"])


def test_unknown_models_are_refused_at_push_and_save(sqlite_deck: Deck) -> None:
    builtin = "local/smollm2-135m-instruct"
    with sqlite_deck.client() as client:
        # prompts as code: one file, a dry run, and a batch (which names the file at fault)
        message = refusal(client.post("/api/push", json=document("local/no-such-model")))
        assert "local/no-such-model" in message and builtin in message
        assert refusal(client.post("/api/push", params={"dry_run": True}, json=document("local/nope")))
        message = refusal(client.post("/api/push", json=document("nobody/x")))
        assert "no configured provider" in message
        assert all(name in message for name in ("anthropic", "gemini", "local", "openai"))
        batch = {
            "documents": [document("openai/fine", "fine"), document("local/nope")],
            "names": ["a.yaml", "b.yaml"],
        }
        assert refusal(client.post("/api/push/batch", json=batch)).startswith("b.yaml: ")
        assert client.get("/api/prompts/ghost").status_code == 404  # nothing was written
        assert client.get("/api/prompts/fine").status_code == 404  # all or none

        # the admin API (and the console editor, which saves through it)
        version = {"model": "local/no-such-model", "messages": [{"role": "user", "content": "{{text}}"}]}
        message = refusal(client.post("/api/prompts/summarize/versions", json=version))
        assert builtin in message
        assert [v["number"] for v in client.get("/api/prompts/summarize/versions").json()["data"]] == [1]
        config = {"fallbacks": [{"model": "local/no-such-model"}]}
        assert builtin in refusal(
            client.put("/api/deployments/summarize/variants/default/config", json=config)
        )

        # upstream model names are free-form: only their provider is checked
        assert client.post("/api/push", json=document("openai/anything-at-all")).status_code == 200
        assert client.post("/api/push", json=document(builtin, "real")).status_code == 200
        saved = client.post(
            "/api/prompts/summarize/versions", json={**version, "model": "anthropic/new-model"}
        )
        assert saved.status_code == 201, saved.text
        config = {"fallbacks": [{"model": "gemini/some-model"}]}
        assert (
            client.put("/api/deployments/summarize/variants/default/config", json=config).status_code == 200
        )


def test_a_configured_local_model_must_exist(tmp_path: Path) -> None:
    """`PROMPTDECK_LOCAL_MODEL_PATH` names a GGUF file that is not there: its model is refused."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}",
        tmp_path,
        local_model_path=str(tmp_path / "ghost.gguf"),
    )
    workspace_id, key = seed(settings)
    deck = Deck(start_server(settings), key, workspace_id)
    try:
        with deck.client() as client:
            message = refusal(client.post("/api/push", json=document("local/ghost")))
        assert "local/smollm2-135m-instruct" in message and "local/ghost," not in message
    finally:
        deck.live.stop()


# ── a misspelt input ─────────────────────────────────────────────────────────


def test_a_misspelt_input_gets_a_did_you_mean(sqlite_deck: Deck) -> None:
    with sqlite_deck.client() as client:
        hive = client.post("/v1/prompt/invoke", json={"deployment": "summarize", "inputs": {"txt": "hi"}})
        vellum = client.post(
            "/v1/execute-prompt",
            json={
                "prompt_deployment_name": "summarize",
                "inputs": [{"type": "STRING", "name": "txt", "value": "hi"}],
            },
            headers={"X-API-KEY": sqlite_deck.admin_key},
        )
        traceport = client.post("/prompt/summarize/run", json={"variables": {"txt": "hi"}})
    message = expect_hive_error(hive, 422, "validation_error")
    assert message == "missing required input: text; ignored undeclared input: txt (did you mean 'text'?)"
    assert vellum.status_code == 400 and "did you mean 'text'?" in vellum.json()["detail"]
    assert traceport.status_code == 400 and traceport.json()["error"]["param"] == "variables"
    assert "txt (did you mean 'text'?)" in traceport.json()["error"]["message"]
