"""Change events: the one way a write tells the hot path's caches that what they hold is stale.

The stores that write what the invoke path caches (the catalog's prompts, deployments and prompt
sync, provider credentials, price overrides) publish an event after each committed write; the
caches subscribe (`services.py` wires the engine's). No route handler invalidates a cache itself,
so a new write path cannot forget to.

In one process an event is a function call. The governance issue carries the same events across
replicas over Redis pub/sub: a subscriber that forwards each event to a channel, and a listener
that publishes what other replicas send into the local feed. The events are small frozen
dataclasses so they serialize as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("promptdeck.change_events")


@dataclass(frozen=True, slots=True)
class CatalogChanged:
    """A workspace's prompts, versions, deployments or variants changed."""

    workspace_id: str


@dataclass(frozen=True, slots=True)
class ProviderSettingsChanged:
    """A workspace's provider credentials or price overrides changed."""

    workspace_id: str


ChangeEvent = CatalogChanged | ProviderSettingsChanged
Subscriber = Callable[[ChangeEvent], None]


class ChangeFeed:
    """An in-process publisher: every subscriber is called, in order, with every event."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def publish(self, event: ChangeEvent) -> None:
        """Called after the write committed. A failing subscriber is logged and the others still
        run: the write has happened, and one broken cache must not keep the rest stale."""
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("a subscriber to %r failed", event)
