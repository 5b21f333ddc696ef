"""The real `openai` client against a live promptdeck on loopback: the OpenAI chat-completions
dialect (`/v1/chat/completions`, `/v1/models`) and Traceport (`/prompt/{slug}/run`, through the
client's low-level `post`), on the embedded model and on a fake OpenAI-compatible upstream.

Checks what the client parses, the errors it raises, and the runs stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai import OpenAI, Stream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, deck_over, run_of, sqlite_url

TEXT = "The quick brown fox jumps over the lazy dog while the farmer sleeps."
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_ANSWER = {
    "id": "chatcmpl-up",
    "object": "chat.completion",
    "model": "tools",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def fake(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    """A live promptdeck over the fake upstream: `fast` (variants default, beta) and `tools`."""
    directory: Path = tmp_path_factory.mktemp("openai-client")
    with deck_over(upstream.url, sqlite_url(directory), directory) as deck:
        fake_openai.push_prompt(deck.url, deck.admin_key, "tools", "openai/tools")
        upstream.scripts["tools"] = Script(raw=orjson.dumps(TOOL_ANSWER))
        yield deck


def chat(deck: Deck, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=deck.url + "/v1", api_key=key or deck.admin_key, max_retries=0)


def root(deck: Deck, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=deck.url, api_key=key or deck.admin_key, max_retries=0)


def request_id(completion: ChatCompletion) -> str:
    rid = completion._request_id
    assert rid is not None and completion.id == "chatcmpl-" + rid.removeprefix("req_")
    return rid


# ── the embedded model ───────────────────────────────────────────────────────


def test_chat_completion_on_the_embedded_model(sqlite_deck: Deck) -> None:
    asked: Any = [{"role": "user", "content": "Keep it short."}]
    completion = chat(sqlite_deck).chat.completions.create(
        model="summarize", messages=asked, extra_body={"variables": {"text": TEXT}}, max_tokens=12
    )
    assert completion.object == "chat.completion"
    assert completion.model == "local/smollm2-135m-instruct"
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 10 and 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert completion.system_fingerprint == "promptdeck:summarize@default:v1"

    run = run_of(sqlite_deck, request_id(completion))
    assert run["dialect"] == "openai" and run["status"] == "success" and run["streamed"] is False
    assert run["deployment"] == "summarize" and run["variant"] == "default"
    assert run["inputs"] == {"text": TEXT}
    assert run["messages"] == [
        {"role": "system", "content": "You summarize text in one sentence."},
        {"role": "user", "content": f"Summarize: {TEXT}"},
        *asked,
    ]
    assert run["output"] == choice.message.content
    assert (run["input_tokens"], run["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)


def test_streamed_chat_completion_on_the_embedded_model_with_usage(sqlite_deck: Deck) -> None:
    stream = chat(sqlite_deck).chat.completions.create(
        model="summarize@short",
        messages=[],
        extra_body={"variables": {"text": TEXT}},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    *_, last = chunks
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()

    run = run_of(sqlite_deck, "req_" + chunks[0].id.removeprefix("chatcmpl-"))
    assert run["dialect"] == "openai" and run["variant"] == "short" and run["streamed"] is True
    assert run["output"] == text and run["output_tokens"] == last.usage.completion_tokens


def test_traceport_run_through_the_low_level_post_on_the_embedded_model(sqlite_deck: Deck) -> None:
    completion = root(sqlite_deck).post(
        "/prompt/summarize/run", body={"variables": {"text": TEXT}}, cast_to=ChatCompletion
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert (completion.choices[0].message.content or "").strip()
    run = run_of(sqlite_deck, request_id(completion))
    assert run["dialect"] == "traceport" and run["deployment"] == "summarize" and run["variant"] == "default"
    assert run["messages"][1] == {"role": "user", "content": f"Summarize: {TEXT}"}


# ── the fake upstream ────────────────────────────────────────────────────────


def test_per_call_overrides_and_appended_messages_reach_the_upstream(
    fake: Deck, upstream: FakeOpenAI
) -> None:
    history: list[Any] = [
        {
            "role": "developer",
            "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "kind."}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "42"},
        {"role": "user", "content": "And now?"},
    ]
    completion = chat(fake).chat.completions.create(
        model="fast@beta",
        messages=history,
        temperature=0.5,
        top_p=0.9,
        max_completion_tokens=33,
        stop=["END"],
        seed=5,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        response_format={"type": "json_object"},
        user="end-user-7",
        metadata={"team": "growth"},
        extra_body={"variables": INPUTS},
    )
    assert completion.choices[0].message.content == Script().text
    sent = upstream.requests[-1]
    assert sent["model"] == "fast"
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop"], sent["seed"]) == (
        0.5,
        0.9,
        33,
        ["END"],
        5,
    )
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.1, 0.2)
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][2:] == [
        {"role": "system", "content": "Be kind."},
        {"role": "assistant", "content": "", "tool_calls": history[1]["tool_calls"]},
        {"role": "tool", "content": "42", "tool_call_id": "call_9"},
        {"role": "user", "content": "And now?"},
    ]

    run = run_of(fake, request_id(completion))
    assert run["dialect"] == "openai" and run["variant"] == "beta"
    assert run["end_user"] == "end-user-7" and run["metadata"] == {"team": "growth"}
    assert run["messages"][2:] == [
        {"role": "system", "content": "Be kind."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_9", "name": "lookup", "arguments": '{"q":1}'}],
        },
        {"role": "tool", "content": "42", "tool_call_id": "call_9"},
        {"role": "user", "content": "And now?"},
    ]
    assert (run["input_tokens"], run["output_tokens"]) == (11, 4)


def test_tool_calls_come_back_parsed_by_the_client(fake: Deck, upstream: FakeOpenAI) -> None:
    client = chat(fake)
    completion = client.chat.completions.create(
        model="tools",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        extra_body={"variables": INPUTS},
    )
    sent = upstream.requests[-1]
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id == "call_1"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.usage is not None and completion.usage.total_tokens == 39

    with client.chat.completions.stream(
        model="tools",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        extra_body={"variables": INPUTS},
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    (streamed,) = final.choices[0].message.tool_calls or []
    assert (streamed.id, streamed.function.name, streamed.function.arguments) == (
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    run = run_of(fake, "req_" + final.id.removeprefix("chatcmpl-"))
    assert run["tool_calls"] == [{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}]


def test_models_lists_the_workspace_deployments(fake: Deck) -> None:
    models = list(chat(fake).models.list())
    assert [m.id for m in models] == ["fast", "summarize", "tools"]
    assert all(m.object == "model" and m.owned_by == "promptdeck" and m.created > 0 for m in models)


def test_traceport_streamed_through_the_low_level_post(fake: Deck, upstream: FakeOpenAI) -> None:
    stream = root(fake).post(
        "/prompt/fast/run",
        body={"variables": INPUTS, "stream": True, "stream_options": {"include_usage": True}},
        cast_to=ChatCompletionChunk,
        stream=True,
        stream_cls=Stream[ChatCompletionChunk],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == Script().text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 11
    run = run_of(fake, "req_" + chunks[0].id.removeprefix("chatcmpl-"))
    assert run["dialect"] == "traceport" and run["streamed"] is True and run["output"] == text


def test_traceport_model_override(fake: Deck, upstream: FakeOpenAI) -> None:
    completion = root(fake).post(
        "/prompt/fast/run", body={"variables": INPUTS, "model": "openai/other"}, cast_to=ChatCompletion
    )
    assert upstream.requests[-1]["model"] == "other"
    assert completion.model == "openai/other"
    assert run_of(fake, request_id(completion))["model"] == "openai/other"


def test_errors_are_raised_as_the_right_client_exceptions(fake: Deck, upstream: FakeOpenAI) -> None:
    before = len(upstream.seen)
    client = chat(fake)
    message: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=message)
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="fast@nope", messages=message)
    with pytest.raises(openai.NotFoundError):
        root(fake).post("/prompt/nope/run", body={}, cast_to=ChatCompletion)
    with pytest.raises(openai.AuthenticationError) as denied:
        chat(fake, "pd_wrong").chat.completions.create(model="fast", messages=message)
    assert denied.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        chat(fake, "pd_wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        root(fake, "pd_wrong").post("/prompt/fast/run", body={}, cast_to=ChatCompletion)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="fast",
            messages=message,
            temperature=7,
            extra_body={"variables": INPUTS},
        )
    assert bad.value.param == "temperature" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as unfilled:
        client.chat.completions.create(model="fast", messages=message)
    assert unfilled.value.param == "variables"
    with pytest.raises(openai.BadRequestError):
        root(fake).post("/prompt/fast/run", body={"variables": "text"}, cast_to=ChatCompletion)
    assert len(upstream.seen) == before


def test_provider_failures_reach_the_client_as_errors(fake: Deck, upstream: FakeOpenAI) -> None:
    client = chat(fake)
    upstream.scripts["fast"] = Script(chunks=("partial ", "answer ", "never"), cut_after=2)
    try:
        stream = client.chat.completions.create(
            model="fast",
            messages=[],
            stream=True,
            extra_body={"variables": INPUTS},
        )
        seen: list[str] = []
        with pytest.raises(openai.APIError) as cut:
            for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
        assert "".join(seen) == "partial answer "
        assert isinstance(cut.value.body, dict) and cut.value.body["type"] == "server_error"

        upstream.scripts["fast"] = Script(status=400)  # not retryable: one upstream call
        before = len(upstream.seen)
        with pytest.raises(openai.InternalServerError) as failed:
            client.with_options(max_retries=2).chat.completions.create(
                model="fast", messages=[], extra_body={"variables": INPUTS}
            )
        assert failed.value.status_code == 502
        assert failed.value.response.headers["x-should-retry"] == "false"
        assert len(upstream.seen) == before + 1  # the client did not run the prompt again
        run = run_of(fake, failed.value.response.headers["x-request-id"])
        assert run["status"] == "error" and run["dialect"] == "openai"
    finally:
        del upstream.scripts["fast"]
