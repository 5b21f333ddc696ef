"""The response cache on the wire: a variant that opts in answers an identical call again without
its provider, in every dialect, streamed or not; `Cache-Control: no-cache`, the temperature rule,
the TTL and the memory cap decide when it does not; failures are never kept; a hit is logged
as a run that cost nothing and saved what the first call cost; and servers sharing one Redis
share the cache, which a Redis that goes away turns into misses, never failed calls."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from promptdeck.engine.response_stores import KEY_PREFIX, MemoryStore
from promptdeck.store.console_members import MemberStore
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.console_sign_in import signed_in_client
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, deck_over, run_of, sqlite_url
from tests.support.live_server import start_server
from tests.support.redis_server import RedisServer, redis_server

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck

MODEL = "gpt-4o-mini"  # genai-prices knows its price, so a run has a cost to save
TEXT = Script().text
DIALECTS = ("fetchhive", "openai_chat", "traceport", "vellum")
PASSWORD = "correct horse battery"


def push(deck: Deck, deployment: str, temperature: float | None, cache: dict[str, Any] | None) -> None:
    """A prompt served as `deployment` by the fake upstream's MODEL, and its variant's cache."""
    document = fake_openai.prompt_document(deployment, f"openai/{MODEL}")
    document["params"] = {"max_tokens": 64} | ({} if temperature is None else {"temperature": temperature})
    with deck.client() as client:
        assert client.post("/api/push", json=document).status_code == 200
        answer = client.put(f"/api/deployments/{deployment}/variants/default/config", json={"cache": cache})
        assert answer.status_code == 200, answer.text
        expected = None if cache is None else {"when_temperature_above_zero": False} | cache
        assert answer.json()["variants"]["default"]["config"].get("cache") == expected


def serve(deck: Deck) -> Deck:
    push(deck, "cached", 0.0, {"ttl_seconds": 600})
    push(deck, "warm", 0.7, {"ttl_seconds": 600})
    push(deck, "unset", None, {"ttl_seconds": 600})
    push(deck, "warm-allowed", 0.7, {"ttl_seconds": 600, "when_temperature_above_zero": True})
    push(deck, "plain", 0.0, None)
    return deck


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deck, FakeOpenAI]]:
    """One server (memory cache) on its own upstream for the cases that each use their own inputs."""
    directory: Path = tmp_path_factory.mktemp("response-cache")
    with FakeOpenAI() as server, deck_over(server.url, sqlite_url(directory), directory) as deck:
        yield serve(deck), server


def inputs(tag: str) -> dict[str, str]:
    return {**INPUTS, "text": f"{INPUTS['text']} ({tag})"}


def test_a_bad_cache_section_is_refused_with_every_problem(shared: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = shared
    bad = {"cache": {"ttl_seconds": 0, "when_temperature_above_zero": "yes", "ttl": 5}}
    with deck.client() as client:
        answer = client.put("/api/deployments/plain/variants/default/config", json=bad)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"] == [
        "cache.ttl_seconds: expected seconds above 0 and at most 2592000 (30 days)",
        "cache.when_temperature_above_zero: expected true or false",
        "cache.ttl: unknown field",
    ]


# ── calling each dialect, and what its answer says ───────────────────────────


def call(
    deck: Deck,
    dialect: str,
    deployment: str,
    values: dict[str, str],
    stream: bool = False,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    """One call in `dialect`; the answer is read whole (streamed ones too)."""
    if dialect == "fetchhive":
        path, body = "/v1/prompt/invoke", {"deployment": deployment, "inputs": values, "streaming": stream}
    elif dialect == "openai_chat":
        path = "/v1/chat/completions"
        body = {"model": deployment, "messages": [], "variables": values, "stream": stream}
    elif dialect == "traceport":
        path, body = f"/prompt/{deployment}/run", {"variables": values, "stream": stream}
    else:
        path = "/v1/execute-prompt-stream" if stream else "/v1/execute-prompt"
        body = {
            "prompt_deployment_name": deployment,
            "inputs": [{"type": "STRING", "name": k, "value": v} for k, v in values.items()],
        }
    with deck.client() as client:
        response = client.post(
            path, json=body | extra, headers={"X-API-KEY": deck.admin_key, **(headers or {})}
        )
    return response


def text_of(dialect: str, stream: bool, response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    if not stream:
        body = response.json()
        if dialect == "fetchhive":
            return str(body["response"])
        if dialect == "vellum":
            assert body["state"] == "FULFILLED", body
            return str(body["outputs"][0]["value"])
        return str(body["choices"][0]["message"]["content"])
    if dialect == "vellum":
        events = [orjson.loads(line) for line in response.text.splitlines() if line.strip()]
        assert events[-1]["state"] == "FULFILLED", events
        return str(events[-1]["outputs"][0]["value"])
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", lines
    events = [orjson.loads(line) for line in lines[:-1]]
    if dialect == "fetchhive":
        return "".join(e.get("response", "") for e in events if e.get("type") == "response")
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))


def shape(dialect: str, stream: bool, response: httpx.Response) -> Any:
    """What a dialect's answer looks like, without its values: the keys (non-streamed), or the
    kinds of event in order, repeats folded (streamed)."""
    if not stream:
        return sorted(response.json())
    if dialect == "vellum":
        kinds = [orjson.loads(line)["state"] for line in response.text.splitlines() if line.strip()]
    else:
        events = [line for line in response.text.splitlines() if line.startswith("data: ")]
        kinds = [
            "done" if e == "data: [DONE]" else ",".join(sorted(orjson.loads(e.removeprefix("data: "))))
            for e in events
        ]
    return [kind for i, kind in enumerate(kinds) if i == 0 or kinds[i - 1] != kind]


# ── memory ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_hit_answers_in_every_dialect_streamed_and_not(
    shared: tuple[Deck, FakeOpenAI], dialect: str
) -> None:
    deck, upstream = shared
    values = inputs(dialect)
    before = len(upstream.seen)
    first = {stream: call(deck, dialect, "cached", values, stream) for stream in (False, True)}
    assert len(upstream.seen) == before + 1  # the streamed call was already a hit
    for stream in (False, True):
        again = call(deck, dialect, "cached", values, stream)
        assert text_of(dialect, stream, again) == TEXT == text_of(dialect, stream, first[stream])
        assert shape(dialect, stream, again) == shape(dialect, stream, first[stream])
    assert len(upstream.seen) == before + 1


def test_every_dialect_hits_the_answer_another_dialect_stored(shared: tuple[Deck, FakeOpenAI]) -> None:
    """The key is the provider's payload: the same rendered call is the same entry, whoever asks."""
    deck, upstream = shared
    values = inputs("across dialects")
    before = len(upstream.seen)
    for dialect in DIALECTS:
        assert text_of(dialect, True, call(deck, dialect, "cached", values, True)) == TEXT
    assert len(upstream.seen) == before + 1


def test_no_cache_asks_the_provider_and_stores_its_answer(shared: tuple[Deck, FakeOpenAI]) -> None:
    deck, upstream = shared
    values = inputs("no-cache")
    before = len(upstream.seen)
    fresh = {"Cache-Control": "no-cache"}
    assert text_of("fetchhive", False, call(deck, "fetchhive", "cached", values, headers=fresh)) == TEXT
    assert len(upstream.seen) == before + 1
    assert text_of("fetchhive", False, call(deck, "fetchhive", "cached", values)) == TEXT  # stored
    assert len(upstream.seen) == before + 1
    call(deck, "openai_chat", "cached", values, True, headers=fresh)  # never read from the cache
    assert len(upstream.seen) == before + 2


def test_no_store_asks_the_provider_and_keeps_nothing(shared: tuple[Deck, FakeOpenAI]) -> None:
    deck, upstream = shared
    values = inputs("no-store")
    before = len(upstream.seen)
    private = {"Cache-Control": "private, no-store"}
    assert text_of("fetchhive", False, call(deck, "fetchhive", "cached", values, headers=private)) == TEXT
    assert text_of("fetchhive", False, call(deck, "fetchhive", "cached", values)) == TEXT  # not kept
    assert len(upstream.seen) == before + 2
    assert text_of("fetchhive", False, call(deck, "fetchhive", "cached", values)) == TEXT  # kept now
    assert len(upstream.seen) == before + 2


def test_temperature_above_zero_is_cached_only_when_the_variant_says(shared: tuple[Deck, FakeOpenAI]) -> None:
    deck, upstream = shared
    values = inputs("temperature")
    for deployment, calls in (("warm", 2), ("unset", 2), ("warm-allowed", 1), ("plain", 2), ("cached", 1)):
        before = len(upstream.seen)
        for _ in range(2):
            assert text_of("fetchhive", False, call(deck, "fetchhive", deployment, values)) == TEXT
        assert len(upstream.seen) - before == calls, deployment
    # a caller's own temperature counts: 0 through the OpenAI dialect caches the warm variant
    before = len(upstream.seen)
    for _ in range(2):
        call(deck, "openai_chat", "warm", inputs("cold call"), temperature=0)
    assert len(upstream.seen) == before + 1


def test_an_answer_expires_after_its_ttl(shared: tuple[Deck, FakeOpenAI]) -> None:
    deck, upstream = shared
    store = deck.services.engine.response_cache.store
    assert isinstance(store, MemoryStore)
    now = [time.monotonic()]
    store.clock = lambda: now[0]
    try:
        values = inputs("ttl")
        before = len(upstream.seen)
        call(deck, "fetchhive", "cached", values)
        now[0] += 599
        call(deck, "fetchhive", "cached", values)
        assert len(upstream.seen) == before + 1
        now[0] += 2  # past the variant's 600 s
        call(deck, "fetchhive", "cached", values)
        assert len(upstream.seen) == before + 2
    finally:
        store.clock = time.monotonic


def test_failures_and_cut_streams_are_not_cached(shared: tuple[Deck, FakeOpenAI]) -> None:
    deck, upstream = shared
    values = inputs("failures")
    before = len(upstream.seen)
    upstream.queue(MODEL, Script(status=400))
    assert call(deck, "fetchhive", "cached", values).status_code >= 400
    upstream.queue(MODEL, Script(cut_after=2))
    cut = call(deck, "openai_chat", "cached", values, True)
    assert cut.status_code == 200 and "upstream_stream_cut" in cut.text  # cut off after two chunks
    assert len(upstream.seen) == before + 2
    assert text_of("fetchhive", False, call(deck, "fetchhive", "cached", values)) == TEXT  # asked again
    assert text_of("fetchhive", False, call(deck, "fetchhive", "cached", values)) == TEXT  # now a hit
    assert len(upstream.seen) == before + 3


def test_a_hit_is_logged_as_a_free_run_that_saved_the_first_calls_cost(
    shared: tuple[Deck, FakeOpenAI],
) -> None:
    deck, _ = shared
    values = inputs("logged")
    miss = run_of(deck, call(deck, "fetchhive", "cached", values).json()["request_id"])
    hit = run_of(deck, call(deck, "openai_chat", "cached", values, True).headers["x-request-id"])
    assert miss["cache_hit"] is False and miss["saved_cost"] is None
    assert miss["cost"] > 0 and miss["attempts"]
    assert hit["cache_hit"] is True and hit["cost"] == 0 and hit["saved_cost"] == pytest.approx(miss["cost"])
    assert hit["status"] == "success" and hit["output"] == TEXT and hit["streamed"] is True
    assert (
        (hit["input_tokens"], hit["output_tokens"])
        == (miss["input_tokens"], miss["output_tokens"])
        == (11, 4)
    )
    assert hit["attempts"] is None  # no provider was called
    plain = run_of(deck, call(deck, "fetchhive", "plain", values).json()["request_id"])
    assert plain["cache_hit"] is None  # the variant does not cache
    listed = {run["id"]: run for run in deck.runs()}
    assert listed[hit["id"]]["cache_hit"] is True and listed[hit["id"]]["saved_cost"] == hit["saved_cost"]
    # the console's run page says so
    email = "cache@example.com"

    async def member() -> None:
        await MemberStore(deck.services.db).create(deck.workspace_id, email, PASSWORD, "owner")

    deck.live.call(member)
    with signed_in_client(deck.url, email, PASSWORD) as (client, _):
        page = client.get(f"/logs/{hit['id']}").text
        assert "cache hit" in page and "saved $" in page
        assert "cache hit" not in client.get(f"/logs/{miss['id']}").text


def test_the_memory_cap_evicts_the_least_recently_used(start_deck: StartDeck, upstream: FakeOpenAI) -> None:
    deck = serve(start_deck(response_cache_mb=0.002))  # 2 KB: a handful of small answers
    store = deck.services.engine.response_cache.store
    assert isinstance(store, MemoryStore) and store.max_bytes == 2097
    tags = [f"answer {n}" for n in range(12)]
    for tag in tags:
        call(deck, "fetchhive", "cached", inputs(tag))
    assert len(upstream.seen) == 12
    assert 2 <= len(store) < 12 and store.held_bytes <= store.max_bytes
    call(deck, "fetchhive", "cached", inputs(tags[-1]))  # the newest is kept
    assert len(upstream.seen) == 12
    call(deck, "fetchhive", "cached", inputs(tags[0]))  # the oldest went first
    assert len(upstream.seen) == 13


# ── Redis ────────────────────────────────────────────────────────────────────


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop."""
    with redis_server() as server:
        yield server


def stored_keys(server: RedisServer, count: int, timeout: float = 5.0) -> list[bytes]:
    """The cache's keys in Redis, once there are `count` (stores happen off the request path)."""
    client = redis.Redis.from_url(server.url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            keys: list[bytes] = client.keys(KEY_PREFIX + "*")
            if len(keys) >= count or time.monotonic() > deadline:
                return keys
            time.sleep(0.02)
    finally:
        client.close()


def test_two_servers_share_one_redis(
    start_deck: StartDeck, upstream: FakeOpenAI, own_redis: RedisServer
) -> None:
    first = serve(start_deck(redis_url=own_redis.url))
    second_server = start_server(first.live.settings)  # the same database, the same Redis
    try:
        second = Deck(second_server, first.admin_key, first.workspace_id)
        values = inputs("shared")
        before = len(upstream.seen)
        assert text_of("fetchhive", False, call(first, "fetchhive", "cached", values)) == TEXT
        [key] = stored_keys(own_redis, 1)
        with contextlib.closing(redis.Redis.from_url(own_redis.url)) as client:
            assert 590_000 < client.pttl(key) <= 600_000  # the variant's TTL
        for dialect in DIALECTS:
            for stream in (False, True):
                assert text_of(dialect, stream, call(second, dialect, "cached", values, stream)) == TEXT
        assert len(upstream.seen) == before + 1
        hit = run_of(second, call(second, "fetchhive", "cached", values).json()["request_id"])
        assert hit["cache_hit"] is True and hit["cost"] == 0 and hit["saved_cost"] > 0
    finally:
        second_server.stop()


def test_a_redis_that_goes_away_is_a_miss_not_a_failure(
    start_deck: StartDeck, upstream: FakeOpenAI, own_redis: RedisServer
) -> None:
    deck = serve(start_deck(redis_url=own_redis.url))
    values = inputs("redis down")
    before = len(upstream.seen)
    call(deck, "fetchhive", "cached", values)
    stored_keys(own_redis, 1)
    call(deck, "fetchhive", "cached", values)
    assert len(upstream.seen) == before + 1
    own_redis.stop()
    for dialect in DIALECTS:
        for stream in (False, True):
            assert text_of(dialect, stream, call(deck, dialect, "cached", values, stream)) == TEXT
    assert len(upstream.seen) == before + 9  # each asked the provider
