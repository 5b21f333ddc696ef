"""The webhook delivery log: one delivery per event and endpoint, and one row per try of it.

A delivery is written before its first try and says when it is tried next, so one that has not
finished when the server stops is tried again at the next start (`due`). Each try is claimed
first (`claim`: the attempt count moves only if no one else moved it), so with several replicas
resuming the same log a try is made once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.tables import webhook_attempts, webhook_deliveries

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    body: bytes
    attempts: int  # tries made so far
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery_id: str
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None  # None: no further try


class WebhookDeliveries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
        self, workspace_id: str, endpoint_ids: list[str], event_id: str, event_type: str, body: bytes
    ) -> list[Delivery]:
        """One pending delivery per endpoint, due now."""
        now = utcnow()
        made = [Delivery(new_id(), endpoint_id, event_id, body, 0, now) for endpoint_id in endpoint_ids]
        if made:
            async with self.engine.begin() as conn:
                await conn.execute(
                    webhook_deliveries.insert(),
                    [
                        {
                            "id": d.id,
                            "workspace_id": workspace_id,
                            "endpoint_id": d.endpoint_id,
                            "event_id": event_id,
                            "event_type": event_type,
                            "body": body.decode(),
                            "state": PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "created_at": now,
                            "finished_at": None,
                        }
                        for d in made
                    ],
                )
        return made

    async def claim(self, delivery: Delivery) -> bool:
        """Take the next try of a delivery; False if another replica took it, or it finished."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                webhook_deliveries.update()
                .where(
                    webhook_deliveries.c.id == delivery.id,
                    webhook_deliveries.c.state == PENDING,
                    webhook_deliveries.c.attempts == delivery.attempts,
                )
                .values(attempts=delivery.attempts + 1)
            )
        return bool(result.rowcount)

    async def record(self, attempt: Attempt, state: str) -> None:
        """A try's outcome, and the delivery's state after it."""
        async with self.engine.begin() as conn:
            await conn.execute(
                webhook_attempts.insert().values(
                    id=new_id(),
                    delivery_id=attempt.delivery_id,
                    attempt=attempt.attempt,
                    started_at=attempt.started_at,
                    duration_ms=attempt.duration_ms,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    next_attempt_at=attempt.next_attempt_at,
                )
            )
            await conn.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == attempt.delivery_id)
                .values(
                    state=state,
                    next_attempt_at=attempt.next_attempt_at,
                    finished_at=None if state == PENDING else utcnow(),
                )
            )

    async def give_up(self, delivery_id: str) -> None:
        """End a delivery without a try (its endpoint was deleted or disabled)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.state == PENDING)
                .values(state=FAILED, next_attempt_at=None, finished_at=utcnow())
            )

    async def due(self, limit: int) -> list[Delivery]:
        """Unfinished deliveries, soonest first (to resume at start)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(webhook_deliveries)
                .where(webhook_deliveries.c.state == PENDING)
                .order_by(webhook_deliveries.c.next_attempt_at)
                .limit(limit)
            )
            return [
                Delivery(r.id, r.endpoint_id, r.event_id, r.body.encode(), r.attempts, r.next_attempt_at)
                for r in rows
            ]

    async def log(self, workspace_id: str, endpoint_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """An endpoint's deliveries, newest first, each with its tries in order."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.workspace_id == workspace_id,
                        webhook_deliveries.c.endpoint_id == endpoint_id,
                    )
                    .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc())
                    .limit(limit)
                )
            ).all()
            ids = [r.id for r in rows]
            tries = (
                await conn.execute(
                    sa.select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id.in_(ids))
                    .order_by(webhook_attempts.c.attempt)
                )
            ).all()
        by_delivery: dict[str, list[dict[str, Any]]] = {}
        for t in tries:
            by_delivery.setdefault(t.delivery_id, []).append(
                {
                    "attempt": t.attempt,
                    "started_at": t.started_at,
                    "duration_ms": round(t.duration_ms, 1),
                    "status_code": t.status_code,
                    "error": t.error,
                    "next_attempt_at": t.next_attempt_at,
                }
            )
        return [
            {
                "id": r.id,
                "event_id": r.event_id,
                "event_type": r.event_type,
                "state": r.state,
                "attempts": r.attempts,
                "created_at": r.created_at,
                "next_attempt_at": r.next_attempt_at,
                "finished_at": r.finished_at,
                "tries": by_delivery.get(r.id, []),
            }
            for r in rows
        ]
