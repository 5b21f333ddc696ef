"""A scripted OpenAI-compatible upstream on 127.0.0.1, served from a background thread.

Each request is answered by the `Script` registered for its model name (the part after
`openai/` in a prompt's model), so one server can be fast, slow, broken and silent at once:

    with FakeOpenAI() as server:
        server.scripts["slow"] = Script(delay=1.0)
        server.queue("flaky", Script(status=503), Script(status=503))  # fail twice, then as scripted
        settings = make_settings(..., openai_base_url=server.url)

`requests` holds each request's JSON body; `seen` the same requests with their path and headers,
and whether the caller hung up before the answer was complete.

It is `tests.support.fake_upstream.FakeUpstream` (served from a background thread) with an
OpenAI-shaped `answer`.

Test modules take the fixtures below by re-export (`upstream = fake_openai.upstream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Deck, make_settings, seed
from tests.support.fake_upstream import FakeUpstream, Seen, chunk, head
from tests.support.invoking import INPUTS
from tests.support.live_server import start_server
from tests.support.postgres import free_port


@dataclass(frozen=True)
class Script:
    """How the fake upstream answers one model."""

    chunks: tuple[str, ...] = ("Hello", ", ", "world", "!")
    delay: float = 0.0  # seconds before each streamed chunk (before the whole answer if not streamed)
    cut_after: int | None = None  # drop the connection after this many streamed chunks (0: at once)
    status: int = 200
    raw: bytes | None = None  # answer with these bytes as the body instead of a completion
    hang: bool = False  # read the request, then never answer
    usage: tuple[int, int] | None = (11, 4)  # prompt tokens, completion tokens; None: report none
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers, e.g. (("Retry-After", "1"),)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class FakeOpenAI(FakeUpstream):
    """`FakeUpstream` answering as OpenAI's chat completions would, by `Script`."""

    def __init__(self) -> None:
        super().__init__(prefix="/v1")
        self.scripts: dict[str, Script] = {}
        self.queued: dict[str, list[Script]] = {}

    @property
    def url(self) -> str:
        """The base URL to configure as `openai_base_url`."""
        return self.base_url

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Each request's JSON body, in order."""
        return [seen.body for seen in self.seen]

    def script(self, model: str) -> Script:
        return self.scripts.get(model, Script())

    def queue(self, model: str, *scripts: Script) -> None:
        """Answer the next requests for `model` with these scripts in turn, then as `scripts` says."""
        self.queued.setdefault(model, []).extend(scripts)

    def count(self, model: str) -> int:
        """How many requests for `model` arrived."""
        return sum(1 for seen in self.seen if seen.model == model)

    def _next_script(self, model: str) -> Script:
        waiting = self.queued.get(model)
        return waiting.pop(0) if waiting else self.script(model)

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    async def answer(self, seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self._next_script(seen.model)
        request = seen.body
        if script.hang:
            await asyncio.Event().wait()  # until the server stops
        if script.cut_after == 0:
            return  # closed without a word, streamed or not
        streamed = bool(request.get("stream"))
        if not streamed or script.raw is not None or script.status != 200:
            if await _hangs_up_within(reader, script.delay):  # as a real upstream would notice
                seen.hung_up = True
                return
            body = script.raw if script.raw is not None else orjson.dumps(_answer_body(script, request))
            framing = f"Content-Length: {len(body)}"
            writer.write(head(script.status, "application/json", framing, script.headers) + body)
            await writer.drain()
            return
        writer.write(head(200, "text/event-stream", "Transfer-Encoding: chunked", script.headers))
        model = request["model"]
        for index, text in enumerate(script.chunks):
            if index == script.cut_after:
                return  # no final chunk: the client sees the connection drop mid-body
            await asyncio.sleep(script.delay)
            if reader.at_eof():  # the caller closed its side: stop, as a real upstream would
                seen.hung_up = True
                return
            writer.write(chunk(_sse(_delta(model, {"content": text}))))
            await writer.drain()
            seen.chunks_sent += 1
        finish = _sse(_delta(model, {}, finish_reason="stop"))
        if script.usage is not None:
            finish += _sse({"id": "chatcmpl-fake", "model": model, "choices": [], "usage": _usage(script)})
        writer.write(chunk(finish + b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


async def _hangs_up_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait `seconds`, or less if the caller closes its side first (then True)."""
    if seconds <= 0:
        return False
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _delta(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _usage(script: Script) -> dict[str, int]:
    prompt, completion = script.usage or (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _answer_body(script: Script, request: dict[str, Any]) -> dict[str, Any]:
    """A chat completion, or OpenAI's error shape when the script sets an error status."""
    if script.status >= 400:
        return {"error": {"message": f"fake upstream failure ({script.status})", "type": "server_error"}}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": request.get("model"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": script.text}, "finish_reason": "stop"}
        ],
        **({"usage": _usage(script)} if script.usage is not None else {}),
    }


# ── helpers for the tests that run promptdeck against this upstream ─────────


def refused_url() -> str:
    """A base URL on loopback where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v1"


def prompt_document(deployment: str, model: str, variants: tuple[str, ...] = ("default",)) -> dict[str, Any]:
    """A prompt file like examples/summarize.yaml, serving `deployment` from `model`."""
    return {
        "prompt": deployment,
        "model": model,
        "params": {"temperature": 0.2, "max_tokens": 64},
        "messages": [
            {"role": "system", "content": "You summarize text in one sentence."},
            {"role": "user", "content": "Summarize for {{audience}}: {{text}}"},
        ],
        "inputs": {
            "text": {"type": "string", "required": True},
            "audience": {"type": "string", "required": True},
        },
        "deploy": {deployment: dict.fromkeys(variants, "latest")},
    }


def push_prompt(
    url: str, admin_key: str, deployment: str, model: str, variants: tuple[str, ...] = ("default",)
) -> None:
    """Push a prompt through the admin API, as `promptdeck push` does."""
    response = httpx.post(
        url + "/api/push",
        json=prompt_document(deployment, model, variants),
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


@contextlib.contextmanager
def deck_over(upstream_url: str, database_url: str, tmp_path: Path, **overrides: Any) -> Iterator[Deck]:
    """A live promptdeck whose `openai/...` models are served by `upstream_url`, with the
    `fast` deployment (model `openai/fast`, variants `default` and `beta`) pushed."""
    settings = make_settings(
        database_url,
        tmp_path,
        openai_base_url=upstream_url,
        writer_flush_seconds=0.05,
        **overrides,
    )
    workspace_id, key = seed(settings)
    live = start_server(settings)
    try:
        push_prompt(live.url, key, "fast", "openai/fast", ("default", "beta"))
        yield Deck(live, key, workspace_id)
    finally:
        live.stop()


def invoke_streamed(deck: Deck, deployment: str, variant: str | None = None) -> list[dict[str, Any]]:
    """A streamed Fetch Hive invoke with `INPUTS`: its events, keep-alive pings left out."""
    body = {"deployment": deployment, "inputs": INPUTS, "variant": variant, "streaming": True}
    with deck.client() as client, client.stream("POST", "/v1/prompt/invoke", json=body) as response:
        assert response.status_code == 200, response.read()
        lines = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", lines
    return [orjson.loads(line) for line in lines[:-1]]


def run_of(deck: Deck, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The run logged for a request id (`GET /api/runs/{request_id}`), waiting for one still
    on its way to the writer (a caller that hung up is noticed a little later)."""
    deadline = time.monotonic() + timeout
    with deck.client() as client:
        while True:
            response = client.get(f"/api/runs/{request_id}")
            if response.status_code != 404 or time.monotonic() > deadline:
                assert response.status_code == 200, response.text
                return dict(response.json())
            time.sleep(0.05)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}"


def expect_hive_error(response: httpx.Response, status: int, code: str) -> str:
    """Check a Fetch Hive error answer (status, JSON envelope, code); returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) - {"request_id"} == {"error", "message", "error_code"}, body
    assert body["error_code"] == code
    assert isinstance(body["message"], str) and body["message"] and body["error"] == body["message"]
    return str(body["message"])


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    """A fresh fake upstream; set `upstream.scripts[model]` to change how it answers."""
    with FakeOpenAI() as server:
        yield server


StartDeck = Callable[..., Deck]


@pytest.fixture
def start_deck(upstream: FakeOpenAI, tmp_path: Path) -> Iterator[StartDeck]:
    """Starts SQLite-backed servers on demand (`start_deck(upstream_url=..., **settings)`),
    pointed at the `upstream` fixture unless told otherwise; all are stopped at teardown."""
    counter = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(upstream_url: str = upstream.url, **overrides: Any) -> Deck:
            directory = tmp_path / f"deck-{next(counter)}"
            directory.mkdir()
            return stack.enter_context(deck_over(upstream_url, sqlite_url(directory), directory, **overrides))

        yield start


@pytest.fixture(scope="module")
def hive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    """One SQLite server (deployment `fast` on its own fake upstream) shared by a module's cases
    that change nothing another case reads."""
    directory = tmp_path_factory.mktemp("hive")
    with FakeOpenAI() as server, deck_over(server.url, sqlite_url(directory), directory) as deck:
        yield deck


@pytest.fixture
def db_deck(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A server on each database (deployment `fast` on the `upstream` fixture)."""
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        yield deck
