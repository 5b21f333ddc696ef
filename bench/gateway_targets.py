"""What the gateway benchmark loads: the upstream directly, the reference proxy, and promptdeck
through each of its dialects, as pre-built request bytes, with a check of each one's answer.

Every target asks for the same completion: the prompt of `PROMPT_DOCUMENT` rendered with `TEXT`
(directly and through the proxy: the rendered messages and parameters promptdeck sends).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fake_upstream import DELTAS
from load_client import SSE, Framing, build_request, connect

MODEL = "bench-model"
DEPLOYMENT = "bench"
TEXT = "The quick brown fox jumps over the lazy dog while the benchmark counts microseconds."
SYSTEM = "You summarize text in one sentence."
PROMPT_DOCUMENT: dict[str, Any] = {  # examples/summarize.yaml, pointed at the fake upstream
    "prompt": "bench",
    "model": f"openai/{MODEL}",
    "params": {"temperature": 0.2, "max_tokens": 128},
    "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Summarize: {{text}}"},
    ],
    "inputs": {"text": {"type": "string", "required": True}},
    "deploy": {DEPLOYMENT: {"default": "latest"}},
}

UPSTREAM_PATH = "/v1/chat/completions"
DIALECTS = ("fetchhive", "openai", "traceport", "vellum")
VELLUM_NDJSON = Framing(b'{"state"', b'"state":"FULFILLED"')


@dataclass(frozen=True)
class Target:
    """One thing to load: the bytes of its non-streaming and streaming requests; `server` names
    the process that serves it (its CPU is the target's), `dialect` promptdeck's dialect."""

    name: str
    port: int
    plain: bytes
    streaming: bytes
    server: str
    dialect: str = "openai"  # the shape of the answers: the upstream's and the proxy's are OpenAI's
    framing: Framing = SSE


def target_name(dialect: str) -> str:
    """The results' key for promptdeck through a dialect: Fetch Hive's is plain `promptdeck`, as
    it was when that was the only dialect measured (the baseline's figures keep their key)."""
    return "promptdeck" if dialect == "fetchhive" else f"promptdeck_{dialect}"


def upstream_body() -> dict[str, Any]:
    """The upstream request as promptdeck makes it: the same rendered messages and parameters."""
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Summarize: {TEXT}"},
        ],
        "temperature": 0.2,
        "max_tokens": 128,
    }


STREAM_FIELDS: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}


def direct_target(port: int, name: str = "direct", server: str = "upstream") -> Target:
    """The upstream, called as promptdeck calls it (also the reference proxy's request)."""
    body = upstream_body()
    plain = build_request(port, UPSTREAM_PATH, body)
    return Target(name, port, plain, build_request(port, UPSTREAM_PATH, body | STREAM_FIELDS), server)


def proxy_target(port: int) -> Target:
    """The reference proxy (reference_proxy.py), with the upstream's own request."""
    return direct_target(port, "proxy", "proxy")


def promptdeck_target(port: int, key: str, dialect: str = "fetchhive") -> Target:
    """promptdeck through one dialect, with the body that dialect's client sends."""
    auth = {"Authorization": f"Bearer {key}"}
    framing = SSE
    if dialect == "fetchhive":  # the compact body fetch-hive-sdk sends
        body: dict[str, Any] = {"deployment": DEPLOYMENT, "streaming": False, "inputs": {"text": TEXT}}
        paths, streamed = ("/v1/prompt/invoke",) * 2, body | {"streaming": True}
    elif dialect == "openai":  # the deployment as the model; its inputs as `variables`
        body = {"model": DEPLOYMENT, "messages": [], "variables": {"text": TEXT}}
        paths, streamed = (UPSTREAM_PATH,) * 2, body | STREAM_FIELDS
    elif dialect == "traceport":
        body = {"variables": {"text": TEXT}}
        paths, streamed = (f"/prompt/{DEPLOYMENT}/run",) * 2, body | STREAM_FIELDS
    elif dialect == "vellum":
        auth = {"X-API-KEY": key}
        body = {
            "prompt_deployment_name": DEPLOYMENT,
            "inputs": [{"type": "STRING", "name": "text", "value": TEXT}],
        }
        paths, streamed = ("/v1/execute-prompt", "/v1/execute-prompt-stream"), body
        framing = VELLUM_NDJSON
    else:
        raise ValueError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")
    return Target(
        target_name(dialect),
        port,
        build_request(port, paths[0], body, auth),
        build_request(port, paths[1], streamed, auth),
        "promptdeck",
        dialect,
        framing,
    )


# ── checks: one answer of each kind, read in full ───────────────────────────────────────────────


def expected_text(deltas: int) -> str:
    """What the fake upstream answers with `--deltas N`."""
    return "".join(DELTAS[i % len(DELTAS)] for i in range(deltas))


def sse_events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(event[6:]) for event in body.split(b"\n\n") if event[6:7] == b"{"]


def openai_plain(body: bytes) -> tuple[list[str], bool]:
    answer = json.loads(body)
    choice = answer["choices"][0]
    return [choice["message"]["content"]], choice["finish_reason"] == "stop" and "usage" in answer


def openai_stream(body: bytes) -> tuple[list[str], bool]:
    events = sse_events(body)
    texts = [e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices")]
    return [text for text in texts if text], any(e.get("usage") for e in events)


def fetchhive_plain(body: bytes) -> tuple[list[str], bool]:
    answer = json.loads(body)
    return [answer.get("response") or ""], answer.get("stop_reason") == "completed"


def fetchhive_stream(body: bytes) -> tuple[list[str], bool]:
    events = sse_events(body)
    texts = [e["response"] for e in events if e.get("type") == "response"]
    return texts, any(e.get("type") == "usage" for e in events)


def vellum_plain(body: bytes) -> tuple[list[str], bool]:
    answer = json.loads(body)
    texts = [o["value"] for o in answer.get("outputs", []) if o.get("type") == "STRING"]
    return texts, answer.get("state") == "FULFILLED"


def vellum_stream(body: bytes) -> tuple[list[str], bool]:
    lines = [json.loads(line) for line in body.split(b"\n") if line.strip()]
    texts = [line["output"]["value"] for line in lines if line.get("state") == "STREAMING"]
    states = [line.get("state") for line in lines]
    return texts, bool(states) and states[0] == "INITIATED" and states[-1] == "FULFILLED"


Reader = Callable[[bytes], tuple[list[str], bool]]
"""An answer's text pieces, and whether it ended as a whole answer should (usage, stop reason)."""

READERS: dict[str, tuple[Reader, Reader]] = {
    "openai": (openai_plain, openai_stream),
    "traceport": (openai_plain, openai_stream),
    "fetchhive": (fetchhive_plain, fetchhive_stream),
    "vellum": (vellum_plain, vellum_stream),
}


def problem(target: Target, streaming: bool, body: bytes, deltas: int) -> str | None:
    """What is wrong with an answer, or None: the text must be the upstream's, a stream must
    carry it in `deltas` events (so that the CPU per event is per event) and end whole."""
    try:
        texts, whole = READERS[target.dialect][streaming](body)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"unreadable answer ({exc!r})"
    if "".join(texts) != expected_text(deltas):
        return f"the text is not the upstream's: {''.join(texts)!r}"
    if streaming and len(texts) != deltas:
        return f"{len(texts)} text events, not {deltas}"
    return None if whole else "no usage / stop reason / final state"


async def sanity_check(*targets: Target, deltas: int = len(DELTAS)) -> None:
    """One request of each kind per target, read in full: a benchmark of fast 404s would be worthless."""
    for target in targets:
        for streaming, request in ((False, target.plain), (True, target.streaming)):
            connection = await connect(target.port, capture=True)
            reply = await asyncio.wait_for(connection.send(request, target.framing), 10)
            if connection.transport is not None:
                connection.transport.close()
            if reply.status != 200 or not reply.complete:
                raise SystemExit(f"{target.name} answered HTTP {reply.status}: {reply.body[:500]!r}")
            wrong = problem(target, streaming, reply.body, deltas)
            if wrong:
                kind = "stream" if streaming else "answer"
                raise SystemExit(f"{target.name}'s {kind}: {wrong}: {reply.body[:500]!r}")
