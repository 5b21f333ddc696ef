"""The real `fetch-hive-sdk` client against a live promptdeck on loopback, on the embedded model.

Checks what the client returns, the event sequence it sees, and the run rows stored.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fetch_hive_sdk import FetchHive

from tests.conftest import Deck

TEXT = "The quick brown fox jumps over the lazy dog while the farmer sleeps."


def sdk(deck: Deck) -> FetchHive:
    return FetchHive(api_key=deck.admin_key, base_url=deck.url + "/v1")


def test_invoke_prompt_returns_real_text_and_logs_the_run(deck: Deck) -> None:
    result = sdk(deck).invoke_prompt(
        deployment="summarize", inputs={"text": TEXT}, user="user-42", metadata={"team": "growth", "n": 3}
    )
    assert result["request_id"].startswith("req_") and len(result["request_id"]) == 36
    assert result["model"] == "local/smollm2-135m-instruct"
    assert isinstance(result["response"], str) and result["response"].strip()
    usage = result["usage"]
    assert usage["prompt_tokens"]["total_tokens"] > 10
    assert 0 < usage["completion_tokens"]["total_tokens"] <= 24
    assert (
        usage["total_tokens"]
        == usage["prompt_tokens"]["total_tokens"] + usage["completion_tokens"]["total_tokens"]
    )
    assert result["stop_reason"] in ("completed", "max_tokens")
    assert isinstance(result["duration"], float)
    assert result["reasoning"] == ""

    (run,) = [r for r in deck.runs() if r["request_id"] == result["request_id"]]
    assert run["status"] == "success"
    assert run["deployment"] == "summarize" and run["variant"] == "default" and run["version_number"] == 1
    assert run["output"] == result["response"]
    assert run["end_user"] == "user-42"
    assert run["metadata"] == {"team": "growth", "n": 3}
    assert run["inputs"] == {"text": TEXT}
    assert run["messages"][1] == {"role": "user", "content": f"Summarize: {TEXT}"}
    assert run["input_tokens"] == usage["prompt_tokens"]["total_tokens"]
    assert run["output_tokens"] == usage["completion_tokens"]["total_tokens"]
    assert run["ttft_ms"] is not None and run["duration_ms"] >= run["ttft_ms"]

    looked_up = sdk(deck).get_request(result["request_id"])
    assert looked_up["response"] == result["response"]


def test_invoke_prompt_stream_event_sequence(deck: Deck) -> None:
    events = list(
        sdk(deck).invoke_prompt_stream(deployment="summarize", variant="short", inputs={"text": TEXT})
    )
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "usage" and kinds.count("usage") == 1
    assert set(kinds[:-1]) == {"response"} and len(kinds) > 2
    request_ids = {e["request_id"] for e in events}
    assert len(request_ids) == 1
    text = "".join(e["response"] for e in events if e["type"] == "response")
    assert text.strip()
    assert all(e["model"] == "local/smollm2-135m-instruct" for e in events if e["type"] == "response")
    usage = events[-1]["usage"]
    assert usage["completion_tokens"]["total_tokens"] > 0 and isinstance(usage["duration"], float)

    (run,) = [r for r in deck.runs() if r["request_id"] in request_ids]
    assert run["streamed"] is True and run["variant"] == "short"
    assert run["output"] == text
    assert run["output_tokens"] == usage["completion_tokens"]["total_tokens"]


def test_async_stream_matches_the_non_streamed_answer(deck: Deck) -> None:
    """Temperature 0 and a fixed seed: the streamed text equals the non-streamed one."""
    client = sdk(deck)

    async def collect() -> list[dict[str, object]]:
        return [e async for e in client.ainvoke_prompt_stream(deployment="summarize", inputs={"text": TEXT})]

    events = asyncio.run(collect())
    streamed = "".join(str(e["response"]) for e in events if e["type"] == "response")
    whole = client.invoke_prompt(deployment="summarize", inputs={"text": TEXT})
    assert streamed == whole["response"]
    assert events[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]  # type: ignore[index]


def test_client_sees_the_right_status_codes(deck: Deck) -> None:
    client = sdk(deck)
    with pytest.raises(httpx.HTTPStatusError) as missing:
        client.invoke_prompt(deployment="summarize", inputs={})
    assert missing.value.response.status_code == 422
    assert "text" in missing.value.response.json()["message"]
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        list(client.invoke_prompt_stream(deployment="no-such-deployment", inputs={"text": "x"}))
    assert unknown.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as nested:
        client.invoke_prompt(deployment="summarize", inputs={"text": "x"}, metadata={"a": {"b": 1}})  # type: ignore[dict-item]
    assert nested.value.response.status_code == 422
    bad = FetchHive(api_key="pd_not-a-key", base_url=deck.url + "/v1")
    with pytest.raises(httpx.HTTPStatusError) as denied:
        bad.invoke_prompt(deployment="summarize", inputs={"text": "x"})
    assert denied.value.response.status_code == 401
    assert denied.value.response.json() == {
        "error": "Invalid access.",
        "message": "Invalid access.",
        "error_code": "unauthorized",
    }
    failed = [r for r in deck.runs() if r["status"] == "error"]
    assert {r["error_code"] for r in failed} >= {"validation_error", "not_found"}
