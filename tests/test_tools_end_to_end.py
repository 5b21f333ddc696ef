"""A version's tools, tool choice and response format reach the upstream, and the tool calls
the model makes are recorded on the run — through a live server and a fake OpenAI-compatible
upstream answering in OpenAI's documented `chat.completion` format with `tool_calls`."""

from __future__ import annotations

import httpx
import orjson

from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TOOL_ANSWER = {
    "id": "chatcmpl-1",
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


def test_tools_reach_the_upstream_and_tool_calls_are_logged(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["tools"] = Script(raw=orjson.dumps(TOOL_ANSWER))
    deck = start_deck()
    document = {
        **fake_openai.prompt_document("weather", "openai/tools"),
        "tools": [WEATHER],
        "tool_choice": "required",
        "response_format": {"type": "json_object"},
    }
    with deck.client() as client:
        assert client.post("/api/push", json=document).status_code == 200
        answer = client.post("/v1/prompt/invoke", json={"deployment": "weather", "inputs": INPUTS})
    assert answer.status_code == 200, answer.text
    assert answer.json()["stop_reason"] == "tool_calls"

    sent = upstream.requests[-1]
    assert sent["tools"] == [{"type": "function", "function": WEATHER}]
    assert sent["tool_choice"] == "required"
    assert sent["response_format"] == {"type": "json_object"}

    run = _run(deck.url, deck.admin_key, answer.json()["request_id"])
    assert run["tool_calls"] == [{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}]
    assert run["stop_reason"] == "tool_calls" and run["output_tokens"] == 9


def _run(url: str, key: str, request_id: str) -> dict[str, object]:
    response = httpx.get(f"{url}/api/runs/{request_id}", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return dict(response.json())
