"""Run retention: each workspace may keep its runs for a number of days; older runs are
deleted, with their metadata and feedback, a batch of ids per transaction so that no
transaction holds a lock for long. The usage rollups and end users (store/usage_rollups.py)
are aggregates kept apart from the runs and are left alone: analytics outlive the runs."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import NotFound
from promptdeck.domain.runs import utcnow
from promptdeck.store.tables import feedback, run_metadata, runs, workspaces

log = logging.getLogger("promptdeck.retention")

PRUNE_BATCH = 1000
PRUNE_EVERY_SECONDS = 3600.0


class RetentionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get_days(self, workspace_id: str) -> int | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(workspaces.c.retention_days).where(workspaces.c.id == workspace_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no workspace {workspace_id!r}")
        return None if row.retention_days is None else int(row.retention_days)

    async def set_days(self, workspace_id: str, days: int | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                workspaces.update().where(workspaces.c.id == workspace_id).values(retention_days=days)
            )

    async def prune_workspace(
        self, workspace_id: str, before: datetime, batch_size: int = PRUNE_BATCH
    ) -> tuple[int, int]:
        """Delete the workspace's runs created before `before`, oldest first, `batch_size` per
        transaction. Returns (runs deleted, transactions used)."""
        deleted = batches = 0
        while True:
            async with self.engine.begin() as conn:
                ids = list(
                    (
                        await conn.execute(
                            sa.select(runs.c.id)
                            .where(runs.c.workspace_id == workspace_id, runs.c.created_at < before)
                            .order_by(runs.c.created_at, runs.c.id)
                            .limit(batch_size)
                        )
                    ).scalars()
                )
                if not ids:
                    return deleted, batches
                await conn.execute(run_metadata.delete().where(run_metadata.c.run_id.in_(ids)))
                await conn.execute(
                    feedback.delete().where(
                        feedback.c.workspace_id == workspace_id, feedback.c.run_id.in_(ids)
                    )
                )
                await conn.execute(runs.delete().where(runs.c.id.in_(ids)))
            deleted += len(ids)
            batches += 1
            if len(ids) < batch_size:
                return deleted, batches

    async def prune(self, now: datetime | None = None, batch_size: int = PRUNE_BATCH) -> dict[str, int]:
        """Apply every workspace's retention period. Returns runs deleted per workspace id."""
        now = now or utcnow()
        async with self.engine.connect() as conn:
            periods = (
                await conn.execute(
                    sa.select(workspaces.c.id, workspaces.c.retention_days).where(
                        workspaces.c.retention_days.is_not(None)
                    )
                )
            ).all()
        result = {}
        for workspace_id, days in periods:
            deleted, _ = await self.prune_workspace(workspace_id, now - timedelta(days=days), batch_size)
            result[workspace_id] = deleted
            if deleted:
                log.info("pruned %d run(s) older than %d day(s) in workspace %s", deleted, days, workspace_id)
        return result
