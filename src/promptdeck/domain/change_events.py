"""Change events: the one way a write tells the hot path's caches that what they hold is stale.

The stores that write what the invoke path caches (the catalog's prompts, deployments and prompt
sync, provider credentials, price overrides) publish an event after each committed write; the
caches subscribe (`services.py` wires the engine's). No route handler invalidates a cache itself,
so a new write path cannot forget to.

In one process an event is a function call. With Redis, `engine.change_bridge` carries the
events caches care about across replicas over pub/sub: a local-only subscriber forwards each to
a channel, and a listener publishes what other replicas send into the local feed as remote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

log = logging.getLogger("promptdeck.change_events")


# What happened, for whoever is told about it (webhooks, docs/operations.md "Webhooks"): each
# fact names its event `type`, and its fields are the event's `data`.


@dataclass(frozen=True, slots=True)
class VersionCreated:
    type: ClassVar[str] = "version.created"
    prompt: str
    version: int
    model: str
    author: str
    note: str


@dataclass(frozen=True, slots=True)
class VariantMoved:
    """A variant now serves another version; `from_version` is None for a new variant."""

    type: ClassVar[str] = "variant.moved"
    deployment: str
    variant: str
    prompt: str
    from_version: int | None
    to_version: int
    actor: str
    note: str


@dataclass(frozen=True, slots=True)
class VariantRolledBack(VariantMoved):
    """A move back to the version the variant served before its last move."""

    type: ClassVar[str] = "variant.rolled_back"

    @classmethod
    def of(cls, moved: VariantMoved) -> VariantRolledBack:
        """The move a rollback made, told as a rollback."""
        return cls(*(getattr(moved, f.name) for f in fields(moved)))


@dataclass(frozen=True, slots=True)
class DeploymentCreated:
    type: ClassVar[str] = "deployment.created"
    deployment: str
    prompt: str
    default_variant: str


@dataclass(frozen=True, slots=True)
class DeploymentDeleted:
    type: ClassVar[str] = "deployment.deleted"
    deployment: str
    prompt: str


@dataclass(frozen=True, slots=True)
class EvaluationFinished:
    """Raised (as `Announced`) by the evaluations feature when a run of a suite ends."""

    type: ClassVar[str] = "evaluation.finished"
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BudgetThresholdCrossed:
    """Raised (as `Announced`) by the budgets feature when spend crosses a threshold."""

    type: ClassVar[str] = "budget.threshold_crossed"
    details: Mapping[str, Any]


Fact = (
    VersionCreated
    | VariantMoved
    | DeploymentCreated
    | DeploymentDeleted
    | EvaluationFinished
    | BudgetThresholdCrossed
)
FACT_TYPES: tuple[type[Fact], ...] = (
    VersionCreated,
    VariantMoved,
    VariantRolledBack,
    DeploymentCreated,
    DeploymentDeleted,
    EvaluationFinished,
    BudgetThresholdCrossed,
)
EVENT_TYPES: tuple[str, ...] = tuple(kind.type for kind in FACT_TYPES)


@dataclass(frozen=True, slots=True)
class CatalogChanged:
    """A workspace's prompts, versions, deployments or variants changed; `facts` say how, in
    the order written. Equality ignores them: to a cache, one change of a workspace is like any."""

    workspace_id: str
    facts: tuple[Fact, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class ProviderSettingsChanged:
    """A workspace's provider credentials or price overrides changed."""

    workspace_id: str


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """A workspace's API keys changed (created, revoked, rotated) or the workspace itself
    (archived, restored): cached keys must be looked up again."""

    workspace_id: str


@dataclass(frozen=True, slots=True)
class QuotasChanged:
    """A workspace's rate limits or budgets changed."""

    workspace_id: str


@dataclass(frozen=True, slots=True)
class Announced:
    """Something happened that changes nothing a cache holds (an evaluation finished, a budget
    threshold was crossed): published only for those told about facts."""

    workspace_id: str
    fact: Fact


@dataclass(frozen=True, slots=True)
class ChangesMissed:
    """Other replicas' events may have been missed (this replica's Redis subscription dropped and
    came back): every cache drops everything it holds, in every workspace."""


ChangeEvent = (
    CatalogChanged | ProviderSettingsChanged | AccessChanged | QuotasChanged | ChangesMissed | Announced
)
Subscriber = Callable[[ChangeEvent], None]


class ChangeFeed:
    """An in-process publisher: every subscriber is called, in order, with every event.

    An event is local (a write in this process) or remote (another replica's write, brought by
    `engine.change_bridge`, or `ChangesMissed`). Caches want both; a subscriber that acts once
    per write across the whole deployment (the webhook dispatcher, the bridge that forwards local
    events to the other replicas) subscribes with `local_only=True`, so N replicas do not act N
    times and nothing echoes back and forth.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, bool]] = []

    def subscribe(self, callback: Subscriber, *, local_only: bool = False) -> None:
        self._subscribers.append((callback, local_only))

    def publish(self, event: ChangeEvent, *, remote: bool = False) -> None:
        """Called after the write committed. A failing subscriber is logged and the others still
        run: the write has happened, and one broken cache must not keep the rest stale."""
        for callback, local_only in list(self._subscribers):
            if remote and local_only:
                continue
            try:
                callback(event)
            except Exception:
                log.exception("a subscriber to %r failed", event)
