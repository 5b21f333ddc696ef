"""Delivering webhook events: one background task, off every write's path.

The change feed calls `announce` after a write committed; it only puts the event on a bounded
queue (a full queue drops the event with a warning rather than slow the write). The task turns
each event into one logged delivery per subscribed endpoint, then tries them: a signed POST,
never following a redirect, through the outbound URL policy. A try that gets no answer or a
non-2xx is tried again after the next delay of the schedule (10 s, 30 s, 1 min, 3 min, 5 min by
default: 6 tries over about 10 minutes), each delay varied by ±20 % so many failed deliveries do
not come back at once. Every try is written to the delivery log.

Deliveries are written before they are tried, with their next try's time, so those unfinished at
shutdown are tried again at the next start. Events still queued at shutdown are written as
deliveries first. An event announced just before a crash, not yet written, is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from promptdeck.domain.change_events import Announced, CatalogChanged, ChangeEvent, Fact
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.domain.webhook_events import event_body, fact_data, signed_headers
from promptdeck.engine.outbound_http import OutboundPolicy, describe_failure
from promptdeck.store.webhook_deliveries import (
    DELIVERED,
    FAILED,
    PENDING,
    Attempt,
    Delivery,
    WebhookDeliveries,
)
from promptdeck.store.webhook_endpoints import WebhookEndpoints

if TYPE_CHECKING:  # aiohttp is imported on first use (engine/outbound_resolvers.py says why)
    import aiohttp

log = logging.getLogger("promptdeck.webhooks")

RETRY_DELAYS: tuple[float, ...] = (10.0, 30.0, 60.0, 180.0, 300.0)
JITTER = 0.2
TRY_TIMEOUT = 10.0  # seconds for one try, connection included
RESUME_LIMIT = 10_000  # unfinished deliveries picked up at start


@dataclass(frozen=True, slots=True)
class NewEvent:
    workspace_id: str
    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Due:
    delivery: Delivery
    at: float  # time.monotonic()


class WebhookDispatcher:
    def __init__(
        self,
        endpoints: WebhookEndpoints,
        deliveries: WebhookDeliveries,
        policy: OutboundPolicy,
        *,
        delays: Sequence[float] = RETRY_DELAYS,
        jitter: float = JITTER,
        queue_size: int = 10_000,
    ) -> None:
        self.endpoints = endpoints
        self.deliveries = deliveries
        self.policy = policy
        self.delays = tuple(delays)  # may be replaced (tests retry in milliseconds)
        self.jitter = jitter
        self._queue: asyncio.Queue[NewEvent | Due] = asyncio.Queue(queue_size)
        self._scheduled: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # ── the change feed's side: never blocks ─────────────────────────────────

    def announce(self, event: ChangeEvent) -> None:
        """A change feed subscriber: queue each fact the event carries."""
        if isinstance(event, CatalogChanged):
            facts: tuple[Fact, ...] = event.facts
        elif isinstance(event, Announced):
            facts = (event.fact,)
        else:
            return
        for fact in facts:
            self.put(NewEvent(event.workspace_id, fact.type, fact_data(fact)))

    def put(self, job: NewEvent | Due) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            log.warning("webhook queue full: dropped %s", job)

    # ── the task ─────────────────────────────────────────────────────────────

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop trying; write still-queued events as deliveries, tried at the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if isinstance(job, NewEvent):
                with contextlib.suppress(Exception):
                    await self._deliveries_of(job)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        try:
            for delivery in await self.deliveries.due(RESUME_LIMIT):
                self._schedule(delivery)
        except Exception:
            log.exception("reading unfinished webhook deliveries failed; they wait for the next start")
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook dispatcher step failed; going on")
                await asyncio.sleep(1)

    async def _step(self) -> None:
        wait = max(0.0, self._scheduled[0][0] - time.monotonic()) if self._scheduled else None
        job: NewEvent | Due | None = None
        with contextlib.suppress(TimeoutError):
            job = await asyncio.wait_for(self._queue.get(), wait)
        if isinstance(job, NewEvent):
            for delivery in await self._deliveries_of(job):
                self._schedule(delivery)
        elif isinstance(job, Due):
            heapq.heappush(self._scheduled, (job.at, next(self._order), job.delivery))
        while self._scheduled and self._scheduled[0][0] <= time.monotonic():
            _, _, delivery = heapq.heappop(self._scheduled)
            await self.attempt(delivery)

    def _schedule(self, delivery: Delivery) -> None:
        delay = max(0.0, (delivery.next_attempt_at - utcnow()).total_seconds())
        heapq.heappush(self._scheduled, (time.monotonic() + delay, next(self._order), delivery))

    async def _deliveries_of(self, event: NewEvent) -> list[Delivery]:
        targets = await self.endpoints.subscribed(event.workspace_id, event.event_type)
        if not targets:
            return []
        event_id = new_id()
        body = event_body(event_id, event.event_type, event.workspace_id, utcnow(), event.data)
        return await self.deliveries.add(
            event.workspace_id, [t.id for t in targets], event_id, event.event_type, body
        )

    async def attempt(self, delivery: Delivery) -> Attempt | None:
        """Make the next try of a delivery and log it; schedules the one after if it failed.
        None if no try was made (the endpoint is gone or disabled, or another replica took it)."""
        import aiohttp

        target = await self.endpoints.target(delivery.endpoint_id)
        if target is None or not target.enabled:
            await self.deliveries.give_up(delivery.id)
            return None
        if not await self.deliveries.claim(delivery):
            return None
        number = delivery.attempts + 1
        started, clock = utcnow(), time.monotonic()
        headers = signed_headers(delivery.event_id, target.secret, int(time.time()), delivery.body)
        status: int | None = None
        error: str | None = None
        try:
            status = await self.policy.post(self._client(), target.url, delivery.body, headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = describe_failure(exc)
        duration_ms = (time.monotonic() - clock) * 1000
        if status is not None and 200 <= status < 300:
            state, delay = DELIVERED, None
        elif number > len(self.delays):
            state, delay = FAILED, None
            if error is None:
                error = f"HTTP {status}"
        else:
            state = PENDING
            delay = self.delays[number - 1] * (1 + random.uniform(-self.jitter, self.jitter))
        next_at = None if delay is None else utcnow() + timedelta(seconds=delay)
        tried = Attempt(delivery.id, number, started, duration_ms, status, error, next_at)
        await self.deliveries.record(tried, state)
        log.info(
            "webhook %s try %d to endpoint %s: %s",
            delivery.event_id,
            number,
            target.id,
            status if status is not None else error,
        )
        if delay is not None and next_at is not None:
            self.put(
                Due(replace(delivery, attempts=number, next_attempt_at=next_at), time.monotonic() + delay)
            )
        return tried

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made by the first try: a server that sends none imports no aiohttp
            self._session = self.policy.session(TRY_TIMEOUT)
        return self._session
