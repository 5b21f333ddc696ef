"""The real `vellum-ai` client against a live promptdeck on loopback: the embedded model for a
real answer, the fake OpenAI upstream for fast, scripted ones.

Checks what the client parses, the stream events it yields, and the runs and feedback stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from vellum import (
    ChatHistoryInputRequest,
    ChatMessageRequest,
    CompilePromptDeploymentExpandMetaRequest,
    FulfilledExecutePromptResponse,
    JsonInputRequest,
    PromptDeploymentExpandMetaRequest,
    RawPromptExecutionOverridesRequest,
    RejectedExecutePromptResponse,
    StringChatMessageContentRequest,
    StringInputRequest,
    SubmitCompletionActualRequest,
    Vellum,
    VellumEnvironment,
)
from vellum.client.errors import BadRequestError, ForbiddenError, NotFoundError

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, run_of

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck

TEXT = "The quick brown fox jumps over the lazy dog while the farmer sleeps."
ALL_META = PromptDeploymentExpandMetaRequest(
    model_name=True,
    usage=True,
    cost=True,
    finish_reason=True,
    latency=True,
    deployment_release_tag=True,
    prompt_version_id=True,
)


def client(deck: Deck, key: str | None = None) -> Vellum:
    env = VellumEnvironment(default=deck.url, predict=deck.url, documents=deck.url)
    return Vellum(api_key=key or deck.admin_key, environment=env, timeout=60)


def fast_inputs() -> list[StringInputRequest]:
    return [StringInputRequest(name=name, value=value) for name, value in INPUTS.items()]


def deployment_id(deck: Deck, name: str) -> str:
    with deck.client() as admin:
        return str(admin.get(f"/api/deployments/{name}").json()["id"])


def test_execute_prompt_on_the_local_model_with_every_meta(deck: Deck) -> None:
    result = client(deck).execute_prompt(
        prompt_deployment_name="summarize",
        inputs=[StringInputRequest(name="text", value=TEXT)],
        release_tag="short",
        external_id="order-1",
        expand_meta=ALL_META,
        metadata={"team": "growth", "session": {"id": 7}},
    )
    assert isinstance(result, FulfilledExecutePromptResponse)
    (output,) = result.outputs
    assert output.type == "STRING" and isinstance(output.value, str) and output.value.strip()
    meta = result.meta
    assert meta is not None
    assert meta.model_name == "local/smollm2-135m-instruct"
    assert meta.deployment_release_tag == "short"
    assert meta.finish_reason in ("STOP", "LENGTH")
    assert isinstance(meta.latency, int) and meta.latency > 0
    assert meta.cost is not None and meta.cost.value == 0.0 and meta.cost.unit == "USD"
    usage = meta.usage
    assert usage is not None and usage.input_token_count and usage.input_token_count > 10
    assert usage.output_token_count and 0 < usage.output_token_count <= 24
    assert usage.output_char_count == len(output.value)
    assert usage.input_char_count and usage.input_char_count > len(TEXT)
    assert result.raw == {}

    run = run_of(deck, uuid.UUID(result.execution_id).hex)
    assert run["dialect"] == "vellum" and run["status"] == "success"
    assert run["id"] == uuid.UUID(result.execution_id).hex
    assert run["deployment"] == "summarize" and run["variant"] == "short"
    assert meta.prompt_version_id == str(uuid.UUID(run["version_id"]))
    assert run["external_id"] == "order-1"
    assert run["metadata"] == {"team": "growth", "session": {"id": 7}}
    assert run["inputs"] == {"text": TEXT}
    assert run["output"] == output.value
    assert run["input_tokens"] == usage.input_token_count
    assert run["output_tokens"] == usage.output_token_count
    assert run["feedback"] == []
    assert run["id"] in {r["id"] for r in deck.runs()}  # listed like any other run

    with pytest.raises(BadRequestError) as duplicate:
        client(deck).execute_prompt(
            prompt_deployment_name="summarize",
            inputs=[StringInputRequest(name="text", value=TEXT)],
            external_id="order-1",
        )
    assert "order-1" in duplicate.value.body["detail"]


def test_stream_on_the_local_model(sqlite_deck: Deck) -> None:
    seen = list(
        client(sqlite_deck).execute_prompt_stream(
            prompt_deployment_name="summarize",
            inputs=[StringInputRequest(name="text", value=TEXT)],
            expand_meta=PromptDeploymentExpandMetaRequest(model_name=True, usage=True, finish_reason=True),
        )
    )
    states = [e.state for e in seen]
    assert states[0] == "INITIATED" and states[-1] == "FULFILLED"
    assert set(states[1:-1]) == {"STREAMING"} and len(states) > 3
    assert len({e.execution_id for e in seen}) == 1
    assert seen[0].meta is not None and seen[0].meta.model_name == "local/smollm2-135m-instruct"
    text = "".join(e.output.value for e in seen if e.state == "STREAMING")
    final = seen[-1]
    assert final.outputs[0].value == text and text.strip()
    assert final.meta is not None and final.meta.usage is not None
    assert final.meta.finish_reason in ("STOP", "LENGTH")
    run = run_of(sqlite_deck, uuid.UUID(final.execution_id).hex)
    assert run["streamed"] is True and run["output"] == text
    assert run["variant"] == "default"  # LATEST: the deployment's default variant


def test_execute_by_id_with_chat_history_json_and_raw_overrides(
    start_deck: StartDeck, upstream: FakeOpenAI
) -> None:
    deck = start_deck()
    history = [
        ChatMessageRequest(role="USER", text="Earlier question"),
        ChatMessageRequest(role="ASSISTANT", content=StringChatMessageContentRequest(value="Earlier answer")),
    ]
    for given_id in (deployment_id(deck, "fast"), str(uuid.UUID(deployment_id(deck, "fast")))):
        result = client(deck).execute_prompt(
            prompt_deployment_id=given_id,
            release_tag="beta",
            inputs=[
                *fast_inputs(),
                ChatHistoryInputRequest(name="history", value=history),
                JsonInputRequest(name="extra", value={"a": [1, 2]}),
            ],
            raw_overrides=RawPromptExecutionOverridesRequest(
                body={"temperature": 0.9, "user": "u-1"}, headers={"X-Trace": "t-1"}
            ),
            expand_meta=PromptDeploymentExpandMetaRequest(usage=True, deployment_release_tag=True),
            expand_raw=["id"],
        )
        assert isinstance(result, FulfilledExecutePromptResponse)
        assert [o.value for o in result.outputs] == ["Hello, world!"]
        assert result.meta is not None and result.meta.deployment_release_tag == "beta"
        assert result.meta.model_name is None and result.meta.cost is None  # only what was asked
        assert result.meta.usage is not None and result.meta.usage.input_token_count == 11
        seen = upstream.seen[-1]
        assert seen.body["temperature"] == 0.9 and seen.body["user"] == "u-1"
        assert seen.headers["x-trace"] == "t-1"
        assert seen.body["messages"][-2:] == [
            {"role": "user", "content": "Earlier question"},
            {"role": "assistant", "content": "Earlier answer"},
        ]
        run = run_of(deck, uuid.UUID(result.execution_id).hex)
        assert run["variant"] == "beta" and run["inputs"]["extra"] == {"a": [1, 2]}
        assert run["messages"][-1] == {"role": "assistant", "content": "Earlier answer"}


def test_stream_event_sequence_from_the_client(start_deck: StartDeck) -> None:
    deck = start_deck()
    events = list(
        client(deck).execute_prompt_stream(
            prompt_deployment_name="fast", inputs=fast_inputs(), expand_meta=ALL_META, external_id="stream-1"
        )
    )
    assert [e.state for e in events] == ["INITIATED"] + ["STREAMING"] * 4 + ["FULFILLED"]
    assert [e.output.value for e in events[1:-1]] == ["Hello", ", ", "world", "!"]
    assert {e.output_index for e in events[1:-1]} == {0}
    initiated, final = events[0], events[-1]
    assert initiated.meta is not None and initiated.meta.model_name == "openai/fast"
    assert initiated.meta.deployment_release_tag == "LATEST"
    assert final.outputs[0].value == "Hello, world!"
    assert final.meta is not None and final.meta.finish_reason == "STOP"
    assert final.meta.usage is not None and final.meta.usage.output_token_count == 4
    assert isinstance(final.meta.latency, int)
    run = run_of(deck, uuid.UUID(final.execution_id).hex)
    assert run["external_id"] == "stream-1" and run["streamed"] is True and run["dialect"] == "vellum"


def test_provider_failure_is_a_rejected_answer(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    deck = start_deck()
    upstream.scripts["fast"] = Script(status=400)
    result = client(deck).execute_prompt(prompt_deployment_name="fast", inputs=fast_inputs())
    assert isinstance(result, RejectedExecutePromptResponse)
    assert result.error.code == "PROVIDER_ERROR" and result.error.message
    events = list(client(deck).execute_prompt_stream(prompt_deployment_name="fast", inputs=fast_inputs()))
    assert [e.state for e in events] == ["INITIATED", "REJECTED"]
    assert events[-1].error.code == "PROVIDER_ERROR"
    run = run_of(deck, uuid.UUID(result.execution_id).hex)
    assert run["status"] == "error"


def test_reasoning_and_tool_calls_become_thinking_and_function_call_outputs(
    start_deck: StartDeck, upstream: FakeOpenAI
) -> None:
    deck = start_deck()
    message = {
        "role": "assistant",
        "content": "Let me look.",
        "reasoning_content": "The user wants weather.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    answer = {
        "id": "x",
        "object": "chat.completion",
        "model": "fast",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }
    upstream.scripts["fast"] = Script(raw=orjson.dumps(answer))
    result = client(deck).execute_prompt(prompt_deployment_name="fast", inputs=fast_inputs())
    assert isinstance(result, FulfilledExecutePromptResponse)
    thinking, text, call = result.outputs
    assert thinking.type == "THINKING" and thinking.value is not None
    assert thinking.value.value == "The user wants weather."
    assert text.type == "STRING" and text.value == "Let me look."
    assert call.type == "FUNCTION_CALL" and call.value is not None
    assert call.value.name == "weather" and call.value.arguments == {"city": "Paris"}
    assert call.value.id == "call_1"

    events = list(client(deck).execute_prompt_stream(prompt_deployment_name="fast", inputs=fast_inputs()))
    final = events[-1]
    assert final.state == "FULFILLED"
    assert [o.type for o in final.outputs] == ["THINKING", "STRING", "FUNCTION_CALL"]
    streamed = [(e.output_index, e.output.type) for e in events if e.state == "STREAMING"]
    assert streamed == [(0, "THINKING"), (1, "STRING"), (2, "FUNCTION_CALL")]


def test_actuals_by_execution_id_and_external_id(start_deck: StartDeck) -> None:
    deck = start_deck()
    vellum = client(deck)
    first = vellum.execute_prompt(prompt_deployment_name="fast", inputs=fast_inputs())
    second = vellum.execute_prompt(prompt_deployment_name="fast", inputs=fast_inputs(), external_id="ext-9")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    vellum.submit_completion_actuals(
        deployment_name="fast",
        actuals=[
            SubmitCompletionActualRequest(id=first.execution_id, quality=1.0, text="Perfect."),
            SubmitCompletionActualRequest(id=uuid.UUID(first.execution_id).hex, quality=0.5),
        ],
    )
    vellum.submit_completion_actuals(
        deployment_id=str(uuid.UUID(deployment_id(deck, "fast"))),
        actuals=[
            SubmitCompletionActualRequest(external_id="ext-9", quality=0, timestamp=when, metadata={"k": 1})
        ],
    )
    run = run_of(deck, uuid.UUID(first.execution_id).hex)
    assert [(f["quality"], f["text"]) for f in run["feedback"]] == [(1.0, "Perfect."), (0.5, None)]
    (feedback,) = run_of(deck, second.execution_id)["feedback"]  # the UUID form works too
    assert feedback["quality"] == 0 and feedback["metadata"] == {"k": 1}
    assert datetime.fromisoformat(feedback["timestamp"]) == when

    with pytest.raises(NotFoundError):
        vellum.submit_completion_actuals(actuals=[SubmitCompletionActualRequest(id=str(uuid.uuid4()))])
    with pytest.raises(NotFoundError):
        vellum.submit_completion_actuals(actuals=[SubmitCompletionActualRequest(external_id="nope")])
    with pytest.raises(NotFoundError):  # a run of another deployment
        vellum.submit_completion_actuals(
            deployment_name="summarize", actuals=[SubmitCompletionActualRequest(id=first.execution_id)]
        )


def test_provider_payload_without_calling_the_provider(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    deck = start_deck()
    answer = client(deck).deployments.retrieve_provider_payload(
        deployment_name="fast",
        inputs=fast_inputs(),
        release_tag="beta",
        expand_meta=CompilePromptDeploymentExpandMetaRequest(
            model_name=True, deployment_release_tag=True, prompt_version_id=True
        ),
    )
    payload = answer.payload
    assert isinstance(payload, dict)
    assert payload["model"] == "fast" and payload["temperature"] == 0.2
    assert payload["messages"][1]["content"].startswith("Summarize for kids:")
    assert answer.meta is not None and answer.meta.model_name == "openai/fast"
    assert answer.meta.deployment_release_tag == "beta"
    assert answer.meta.prompt_version_id is not None
    assert upstream.seen == []


def test_a_bad_key_is_forbidden(start_deck: StartDeck) -> None:
    deck = start_deck()
    with pytest.raises(ForbiddenError) as refused:
        client(deck, key="pd_wrong").execute_prompt(prompt_deployment_name="fast", inputs=fast_inputs())
    assert refused.value.body == {"detail": "Invalid access."}
    body = {"prompt_deployment_name": "fast", "inputs": [{"type": "STRING", "name": "text", "value": "x"}]}
    older = httpx.post(
        deck.url + "/v1/execute-prompt", json=body, headers={"X_API_KEY": deck.admin_key}, timeout=30
    )
    assert older.status_code == 400 and "audience" in older.json()["detail"]  # past auth, then inputs
