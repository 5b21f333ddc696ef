"""Feedback on runs (Vellum's completion actuals, and the admin API's feedback): how good the
answer was (a quality score 0..1, thumbs up or down), what it should have been, and free
metadata, attached to a run by its id. Also finds runs by the caller's external id.

Feedback is also added to the usage rollups of its run (the hour the run started, every
dimension of the run), in the same transaction. A run still waiting for the writer is read from
the writer's queue; one that is neither there nor stored (pruned) is not rolled up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord, new_id, utcnow
from promptdeck.store.run_metadata import metadata_rows
from promptdeck.store.tables import feedback, run_metadata, runs
from promptdeck.store.usage_rollups import RollupBatch, RunDimensions, feedback_counters, write_rollups

PendingRun = Callable[[str], RunRecord | None]


class FeedbackStore:
    def __init__(self, engine: AsyncEngine, pending_run: PendingRun | None = None) -> None:
        self.engine = engine
        self.pending_run = pending_run  # a run still queued for the writer, by id

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
        rollup = RollupBatch()
        found = await self._dimensions(workspace_id, {row["run_id"] for row in rows})
        for run_id, run in found.items():
            rollup.add_feedback(run, feedback_counters(r for r in rows if r["run_id"] == run_id))
        async with self.engine.begin() as conn:
            await conn.execute(feedback.insert(), rows)
            await write_rollups(conn, rollup)
        return [{k: v for k, v in row.items() if k != "workspace_id"} for row in rows]

    async def _dimensions(self, workspace_id: str, run_ids: set[str]) -> dict[str, RunDimensions]:
        """What each run is rolled up by: from the writer's queue first (a run leaves it only
        once it is stored), else from the database."""
        found: dict[str, RunDimensions] = {}
        for run_id in run_ids:
            record = self.pending_run(run_id) if self.pending_run else None
            if record is not None and record.workspace_id == workspace_id:
                pairs = tuple((m["key"], m["value_text"]) for m in metadata_rows(record))
                found[run_id] = _dimensions(record, pairs)
        stored = run_ids - set(found)
        if not stored:
            return found
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        runs.c.id,
                        runs.c.workspace_id,
                        runs.c.created_at,
                        runs.c.deployment,
                        runs.c.variant,
                        runs.c.version_number,
                        runs.c.model,
                        runs.c.provider,
                        runs.c.end_user,
                    ).where(runs.c.workspace_id == workspace_id, runs.c.id.in_(stored))
                )
            ).all()
            tags = (
                await conn.execute(
                    sa.select(run_metadata.c.run_id, run_metadata.c.key, run_metadata.c.value_text)
                    .where(run_metadata.c.workspace_id == workspace_id, run_metadata.c.run_id.in_(stored))
                    .order_by(run_metadata.c.run_id, run_metadata.c.key)
                )
            ).all()
        pairs_of: dict[str, list[tuple[str, str]]] = {}
        for tag in tags:
            pairs_of.setdefault(tag.run_id, []).append((tag.key, tag.value_text))
        for row in rows:
            found[row.id] = _dimensions(row, tuple(pairs_of.get(row.id, ())))
        return found

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


def _dimensions(run: Any, metadata: tuple[tuple[str, str], ...]) -> RunDimensions:
    """A RunRecord's or a stored run row's dimensions."""
    return RunDimensions(
        run.workspace_id,
        run.created_at,
        run.deployment,
        run.variant,
        run.version_number,
        run.model,
        run.provider,
        run.end_user,
        metadata,
    )


def _feedback_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    del data["workspace_id"]
    return data
