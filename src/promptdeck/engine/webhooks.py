"""Managing a workspace's webhook endpoints: what the admin API, the CLI (through it) and the
console share. A URL is checked against the outbound policy, its name resolved, when it is stored;
the dispatcher checks it again on every try."""

from __future__ import annotations

from typing import Any

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.outbound_urls import UrlRefused
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.domain.webhook_events import PING, event_body, events_problem
from promptdeck.engine.outbound_http import OutboundPolicy
from promptdeck.engine.webhook_dispatcher import WebhookDispatcher
from promptdeck.store.webhook_deliveries import WebhookDeliveries
from promptdeck.store.webhook_endpoints import WebhookEndpoints


class Webhooks:
    def __init__(
        self, endpoints: WebhookEndpoints, deliveries: WebhookDeliveries, policy: OutboundPolicy
    ) -> None:
        self.endpoints = endpoints
        self.deliveries = deliveries
        self.policy = policy
        self.dispatcher = WebhookDispatcher(endpoints, deliveries, policy)

    async def create(
        self, workspace_id: str, url: str, events: list[str], description: str = ""
    ) -> dict[str, Any]:
        """The endpoint, with its `secret`: the only answer that ever holds it."""
        await self._check(url, events)
        endpoint, secret = await self.endpoints.create(workspace_id, url, events, description)
        return endpoint | {"secret": secret}

    async def update(self, workspace_id: str, endpoint_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        await self.endpoints.get(workspace_id, endpoint_id)  # a missing one is a 404 before a bad URL's 400
        if "url" in changes or "events" in changes:
            current = await self.endpoints.get(workspace_id, endpoint_id)
            await self._check(changes.get("url", current["url"]), changes.get("events", current["events"]))
        return await self.endpoints.update(workspace_id, endpoint_id, changes)

    async def rotate(self, workspace_id: str, endpoint_id: str) -> dict[str, Any]:
        secret = await self.endpoints.rotate(workspace_id, endpoint_id)
        return await self.endpoints.get(workspace_id, endpoint_id) | {"secret": secret}

    async def ping(self, workspace_id: str, endpoint_id: str) -> dict[str, Any]:
        """Send a `ping` event to one endpoint now and answer with its first try (failed pings are
        retried like any delivery)."""
        await self.endpoints.get(workspace_id, endpoint_id)
        event_id = new_id()
        body = event_body(event_id, PING, workspace_id, utcnow(), {"endpoint_id": endpoint_id})
        (delivery,) = await self.deliveries.add(workspace_id, [endpoint_id], event_id, PING, body)
        await self.dispatcher.attempt(delivery)
        (logged,) = [
            d for d in await self.deliveries.log(workspace_id, endpoint_id, 20) if d["id"] == delivery.id
        ]
        return logged

    async def _check(self, url: str, events: list[str]) -> None:
        problem = events_problem(events)
        if problem:
            raise ValidationFailed(problem)
        problem = await self.policy.check_url(url)
        if problem:
            raise UrlRefused(f"url: {problem}", details={"url": url})
