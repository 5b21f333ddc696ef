"""Change events across replicas through a real redis-server: an event on one replica reaches the
other's caches well within 1 s, never its webhooks, never back (no echo), and a dropped
subscription drops every cache. The last case runs two live servers on one SQLite database."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from promptdeck.domain.change_events import (
    AccessChanged,
    Announced,
    BudgetThresholdCrossed,
    CatalogChanged,
    ChangeEvent,
    ChangeFeed,
    ChangesMissed,
    ProviderSettingsChanged,
    QuotasChanged,
    VersionCreated,
)
from promptdeck.engine.change_bridge import CHANNEL, ChangeBridge, decode, encode
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, StartDeck, push_prompt
from tests.support.live_server import start_server
from tests.support.redis_server import REDIS_SERVER, RedisServer, redis_server

start_deck = fake_openai.start_deck
upstream = fake_openai.upstream


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@dataclass
class Replica:
    """One replica's feed, its bridge, and what its subscribers saw."""

    feed: ChangeFeed
    bridge: ChangeBridge
    caches: list[ChangeEvent] = field(default_factory=list)  # every event, remote ones too
    webhooks: list[ChangeEvent] = field(default_factory=list)  # local events only

    def remote(self) -> list[ChangeEvent]:
        return [event for event in self.caches if event not in self.webhooks]


def replica(url: str) -> Replica:
    feed = ChangeFeed()
    bridge = ChangeBridge(feed, url)
    seen = Replica(feed, bridge)
    feed.subscribe(seen.caches.append)
    feed.subscribe(seen.webhooks.append, local_only=True)
    return seen


@pytest.fixture
async def pair(server: RedisServer) -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = replica(server.url), replica(server.url)
    await a.bridge.start()
    await b.bridge.start()
    assert a.bridge.subscribed.is_set() and b.bridge.subscribed.is_set()
    a.caches.clear()  # the ChangesMissed of the first subscription
    b.caches.clear()
    yield a, b
    await a.bridge.stop()
    await b.bridge.stop()


async def until(condition: Callable[[], object], within: float = 1.0) -> float:
    """Seconds until `condition()` holds; fails after `within` seconds."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within, "not within the time allowed"
        await asyncio.sleep(0.002)
    return time.monotonic() - start


async def test_an_event_reaches_the_other_replicas_caches_only(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    event = CatalogChanged("ws-1", (VersionCreated("p", 2, "m", "me", ""),))
    a.feed.publish(event)
    took = await until(lambda: b.caches, within=1.0)
    assert took < 0.25
    assert b.caches == [CatalogChanged("ws-1")] and b.caches[0].facts == ()  # type: ignore[union-attr]
    assert b.webhooks == []  # another replica's write is never delivered again
    await asyncio.sleep(0.1)  # nothing comes back to A, nothing loops
    assert a.caches == [event] and a.webhooks == [event] and b.caches == [CatalogChanged("ws-1")]


async def test_every_kind_a_cache_needs_crosses_and_nothing_echoes(
    pair: tuple[Replica, Replica], server: RedisServer
) -> None:
    a, b = pair
    watcher = aioredis.Redis.from_url(server.url)
    pubsub = watcher.pubsub()
    await pubsub.subscribe(CHANNEL)
    assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"  # type: ignore[index]
    sent: list[ChangeEvent] = [
        CatalogChanged("w1"),
        ProviderSettingsChanged("w2"),
        AccessChanged("w3"),
        QuotasChanged("w4"),
    ]
    for event in sent:
        a.feed.publish(event)
    b.feed.publish(AccessChanged("w5"))
    a.feed.publish(Announced("w1", BudgetThresholdCrossed({"percent": 80})))  # for webhooks only
    await until(lambda: len(b.caches) == 5 and len(a.caches) == 6)
    assert b.remote() == sent and a.remote() == [AccessChanged("w5")]
    await asyncio.sleep(0.1)
    messages = []
    while (message := await pubsub.get_message(timeout=0.05)) is not None:
        messages.append(orjson.loads(message["data"]))
    assert len(messages) == 5  # one per write: B did not forward A's events, nor A B's
    assert {m["origin"] for m in messages} == {a.bridge.origin, b.bridge.origin}
    await pubsub.aclose()
    await watcher.aclose()


async def test_a_dropped_subscription_drops_every_cache(
    pair: tuple[Replica, Replica], server: RedisServer
) -> None:
    a, b = pair
    admin = aioredis.Redis.from_url(server.url)
    await admin.client_kill_filter(_type="pubsub")  # both listeners lose their connection
    await until(lambda: ChangesMissed() in b.caches and ChangesMissed() in a.caches, within=3.0)
    assert ChangesMissed() not in b.webhooks
    await until(lambda: b.bridge.subscribed.is_set())
    a.feed.publish(QuotasChanged("w"))  # and the events flow again
    await until(lambda: QuotasChanged("w") in b.caches)
    await admin.aclose()


async def test_events_sent_while_redis_is_away_arrive_when_it_is_back() -> None:
    with redis_server() as own:
        a, b = replica(own.url), replica(own.url)
        await a.bridge.start()
        await b.bridge.start()
        port = own.port
        own.process.terminate()
        own.process.wait(timeout=10)
        await until(lambda: not a.bridge.subscribed.is_set(), within=3.0)
        a.feed.publish(ProviderSettingsChanged("w"))  # queued while Redis is away
        b.caches.clear()
        restarted = _restart(own, port)
        try:
            # A sends it when Redis is back; B, subscribed again, may have missed it (pub/sub keeps
            # nothing), so it dropped every cache
            await until(lambda: a.bridge.pending == 0 and ChangesMissed() in b.caches, within=10.0)
            await until(lambda: b.bridge.subscribed.is_set() and a.bridge.subscribed.is_set(), within=5.0)
            a.feed.publish(AccessChanged("w"))
            await until(lambda: AccessChanged("w") in b.caches)
        finally:
            await a.bridge.stop()
            await b.bridge.stop()
            restarted.stop()


def _restart(old: RedisServer, port: int) -> RedisServer:
    """A new redis-server on the old one's port."""
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=old.directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, old.directory, process)
    deadline = time.monotonic() + 10
    while not server.ping():
        assert time.monotonic() < deadline, "redis-server did not restart"
        time.sleep(0.02)
    return server


def test_only_the_workspace_crosses_and_unknown_messages_drop_everything() -> None:
    blob = encode(CatalogChanged("w", (VersionCreated("p", 1, "m", "a", "secret note"),)), "me")
    assert blob is not None and b"secret note" not in blob
    assert decode(blob) == ("me", CatalogChanged("w"))
    assert encode(Announced("w", BudgetThresholdCrossed({})), "me") is None
    assert encode(ChangesMissed(), "me") is None
    assert decode(b'{"origin": "x", "kind": "from_a_newer_version", "workspace_id": "w"}') == (
        "x",
        ChangesMissed(),
    )
    assert decode(b"not json")[1] == ChangesMissed()
    assert decode(b'{"origin": "x", "kind": "access", "workspace_id": 7}')[1] == ChangesMissed()


def test_two_servers_see_each_others_moves_at_once(
    start_deck: StartDeck, upstream: FakeOpenAI, server: RedisServer
) -> None:
    """Two replicas on one database with a 10-minute cache: a variant moved through A is served
    by B within 1 s."""
    first = start_deck(redis_url=server.url, cache_ttl_seconds=600)
    second = start_server(first.live.settings)
    try:
        with httpx.Client(
            base_url=second.url, headers={"Authorization": f"Bearer {first.admin_key}"}, timeout=30
        ) as admin_b:
            body = {"deployment": "fast", "inputs": fake_openai.INPUTS}
            assert admin_b.post("/v1/prompt/invoke", json=body).status_code == 200  # B caches it
            push_prompt(first.url, first.admin_key, "fast", "openai/slow", ("default", "beta"))
            start = time.monotonic()
            while True:
                answer = admin_b.post("/v1/prompt/invoke", json=body)
                if upstream.seen[-1].model == "slow":
                    break
                assert time.monotonic() - start < 1.0, "B still serves the old version"
                time.sleep(0.01)
            assert answer.status_code == 200
    finally:
        second.stop()
