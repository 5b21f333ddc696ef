"""Feedback on runs (Vellum's completion actuals, and the admin API's feedback): how good the
answer was (a quality score 0..1, thumbs up or down), what it should have been, and free
metadata, attached to a run by its id. Also finds runs by the caller's external id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.tables import feedback, runs


class FeedbackStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, workspace_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store feedback items in one transaction and return them as stored. Each has `run_id`
        and any of `quality`, `thumbs`, `text`, `metadata`, `timestamp`. They are listed later
        in the order given."""
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "run_id": item["run_id"],
                "workspace_id": workspace_id,
                "quality": item.get("quality"),
                "thumbs": item.get("thumbs"),
                "text": item.get("text"),
                "metadata": item.get("metadata"),
                "timestamp": item.get("timestamp"),
                "created_at": now + timedelta(microseconds=position),
            }
            for position, item in enumerate(items)
        ]
        if not rows:
            return []
        async with self.engine.begin() as conn:
            await conn.execute(feedback.insert(), rows)
        return [{k: v for k, v in row.items() if k != "workspace_id"} for row in rows]

    async def for_run(self, workspace_id: str, run_id: str) -> list[dict[str, Any]]:
        """A run's feedback, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(feedback)
                    .where(feedback.c.workspace_id == workspace_id, feedback.c.run_id == run_id)
                    .order_by(feedback.c.created_at, feedback.c.id)
                )
            ).all()
        return [_feedback_dict(row) for row in rows]

    async def run_with_external_id(self, workspace_id: str, external_id: str) -> dict[str, Any] | None:
        """The stored run carrying this external id (`id`, `deployment`, `deployment_id`), if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(runs.c.id, runs.c.deployment, runs.c.deployment_id).where(
                        runs.c.workspace_id == workspace_id, runs.c.external_id == external_id
                    )
                )
            ).first()
        return dict(row._mapping) if row is not None else None


def _feedback_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    del data["workspace_id"]
    return data
