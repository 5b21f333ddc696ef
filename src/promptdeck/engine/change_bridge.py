"""Change events across replicas, over Redis (or Valkey) pub/sub.

Every local event that makes a cache stale is published to one channel, tagged with this
replica's origin id; a listener publishes what the other replicas send into the local feed as
*remote*, which only caches receive (never the webhook dispatcher, never the forwarder: no
duplicate webhooks, no echo). Only the workspace crosses: a cache needs nothing else, so a
`CatalogChanged`'s facts stay home.

Pub/sub delivers only to whoever is connected. Whenever the listener (re)subscribes, events may
have been missed, so it publishes `ChangesMissed` and every cache drops everything. Sending is
one task fed by a bounded queue: a write never waits for Redis, and a failed send is tried again
until Redis answers, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from promptdeck.domain.change_events import (
    AccessChanged,
    CatalogChanged,
    ChangeEvent,
    ChangeFeed,
    ChangesMissed,
    ProviderSettingsChanged,
    QuotasChanged,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("promptdeck.change_bridge")

CHANNEL = "promptdeck:changes"
REDIS_TIMEOUT = 0.5  # seconds to connect or to send; the listener's reads wait without limit
HEALTH_SECONDS = 5.0  # an idle subscription is PINGed this often, so a dead one is noticed
POLL_SECONDS = 1.0  # the listener wakes at least this often (health checks happen then)
RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)  # waits between tries while Redis does not answer
OUTBOX_SIZE = 10_000  # events waiting to be sent; beyond it they are dropped with a warning
QUIET_SECONDS = 10.0  # at most one warning per kind of trouble this often
STOP_SECONDS = 1.0  # at stop, how long queued events may take to be sent

# The events that cross, by their name on the wire.
CROSSING: dict[str, type[CatalogChanged | ProviderSettingsChanged | AccessChanged | QuotasChanged]] = {
    "catalog": CatalogChanged,
    "provider_settings": ProviderSettingsChanged,
    "access": AccessChanged,
    "quotas": QuotasChanged,
}
_NAMES: dict[type, str] = {kind: name for name, kind in CROSSING.items()}


def encode(event: ChangeEvent, origin: str) -> bytes | None:
    """The message for `event`, or None for an event no other replica's cache needs."""
    name = _NAMES.get(type(event))
    if name is None:
        return None
    assert not isinstance(event, ChangesMissed)  # narrowed for the type checker: not in CROSSING
    return orjson.dumps({"origin": origin, "kind": name, "workspace_id": event.workspace_id})


def decode(blob: bytes) -> tuple[str, ChangeEvent]:
    """(origin, event). A message this version does not understand (a newer replica's kind, a
    malformed one) becomes `ChangesMissed`: dropping every cache is always safe."""
    try:
        data: Any = orjson.loads(blob)
        origin, kind, workspace_id = data["origin"], data["kind"], data["workspace_id"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        log.warning("an unreadable change event came in: %r; every cache is dropped", blob[:200])
        return "", ChangesMissed()
    event_type = CROSSING.get(kind)
    if event_type is None or not isinstance(workspace_id, str):
        log.warning("an unknown change event came in: %r; every cache is dropped", blob[:200])
        return str(origin), ChangesMissed()
    return str(origin), event_type(workspace_id)


class ChangeBridge:
    """Forwards `feed`'s local events to the other replicas and brings theirs in, once started."""

    def __init__(
        self,
        feed: ChangeFeed,
        url: str,
        *,
        channel: str = CHANNEL,
        timeout: float = REDIS_TIMEOUT,
    ) -> None:
        import redis.asyncio as aioredis  # here: redis-py costs ~14 MB, and most servers use none
        from redis.exceptions import RedisError

        self.feed = feed
        self.channel = channel
        self.origin = uuid.uuid4().hex  # this replica, for as long as it runs
        self.subscribed = asyncio.Event()  # set while the listener is subscribed
        self._redis: Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=HEALTH_SECONDS,
        )
        self._failures = (RedisError, OSError)
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(OUTBOX_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._sending = 0  # 1 while an event taken from the outbox is being sent
        self._warned: dict[str, float] = {}
        feed.subscribe(self.forward, local_only=True)

    @property
    def pending(self) -> int:
        """Events queued or being sent, not yet accepted by Redis."""
        return self._outbox.qsize() + self._sending

    def forward(self, event: ChangeEvent) -> None:
        """A local-only subscriber of the feed: queue the event for the other replicas."""
        if not self._tasks:
            return  # not started (a CLI command, a test without Redis): no other replica listens
        blob = encode(event, self.origin)
        if blob is None:
            return
        try:
            self._outbox.put_nowait(blob)
        except asyncio.QueueFull:
            self._warn("full", "the change event queue to Redis is full: dropped %r", event)

    async def start(self, wait: float = 2 * REDIS_TIMEOUT) -> None:
        """Start sending and listening; wait up to `wait` s for the subscription, so a replica
        that has just started hears its peers' changes. A Redis that does not answer yet is
        only a warning: the listener keeps trying."""
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="change-bridge-listener"),
            asyncio.create_task(self._send_forever(), name="change-bridge-sender"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), wait)

    async def stop(self) -> None:
        """Send what is queued (for up to `STOP_SECONDS`), then stop and close the connections."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), STOP_SECONDS)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        self.subscribed.clear()
        await self._redis.aclose()

    async def _send_forever(self) -> None:
        while True:
            blob = await self._outbox.get()
            self._sending, tries = 1, 0
            while True:
                try:
                    await self._redis.publish(self.channel, blob)
                    break
                except self._failures as exc:
                    self._warn("send", "could not send a change event to Redis (%s); trying again", exc)
                    await asyncio.sleep(RETRY_SECONDS[min(tries, len(RETRY_SECONDS) - 1)])
                    tries += 1
            self._sending = 0
            self._outbox.task_done()

    async def _listen_forever(self) -> None:
        tries = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=POLL_SECONDS)
                    if message is not None:
                        self._received(message)
                        tries = 0
            except self._failures as exc:
                self._warn(
                    "listen",
                    "the Redis subscription to change events failed (%s); other replicas' changes "
                    "reach this one when it is back (and every cache is dropped then)",
                    exc,
                )
            finally:
                self.subscribed.clear()
                with contextlib.suppress(*self._failures):
                    await pubsub.aclose()
            await asyncio.sleep(RETRY_SECONDS[min(tries, len(RETRY_SECONDS) - 1)])
            tries += 1

    def _received(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":  # the first subscription, or redis-py's own resubscription
            self.subscribed.set()
            self.feed.publish(ChangesMissed(), remote=True)
        elif kind == "message":
            origin, event = decode(message["data"])
            if origin != self.origin:
                self.feed.publish(event, remote=True)

    def _warn(self, what: str, text: str, *args: object) -> None:
        now = time.monotonic()
        if now >= self._warned.get(what, 0.0):
            self._warned[what] = now + QUIET_SECONDS
            log.warning(text, *args)
