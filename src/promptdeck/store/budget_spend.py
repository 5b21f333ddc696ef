"""What a budget's subject has spent in a period [start, end), from the run log: the governor
seeds its counter with it once per period and process, and the API and console show it.

The workspace, a deployment and an end user are read from the hourly usage rollups: they carry
those dimensions, the run writer adds to them in the runs' own transaction, budget periods
start on the hour, and pruning old runs leaves them alone. Keys are not a rollup dimension, so a
key's spend is summed from the runs themselves (the workspace-and-time index narrows them), and
runs removed by the workspace's retention are no longer counted. Runs still queued in a run
writer are in neither until written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.quotas import EACH
from promptdeck.domain.usage_dimensions import ALL, DEPLOYMENT, NONE, USER, hour_of
from promptdeck.store.tables import runs, usage_rollups

ROLLUP_DIMENSIONS = {"workspace": ALL, "deployment": DEPLOYMENT, "end_user": USER}
RUN_COLUMNS = {"key": runs.c.api_key_id, "deployment": runs.c.deployment, "end_user": runs.c.end_user}


def _on_the_hour(moment: datetime) -> bool:
    return hour_of(moment) == moment


class BudgetSpend:
    """Spend in USD of the runs whose price was known (a run with no cost adds nothing)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def spent(
        self, workspace_id: str, subject_kind: str, subject: str, start: datetime, end: datetime
    ) -> float:
        """What one subject spent in [start, end): the workspace (subject ""), a key id, a
        deployment name or an end user. Not "each": that is `largest`."""
        if subject_kind != "workspace" and subject == EACH:
            raise ValueError(f"the spend of each {subject_kind} is one per subject: see largest()")
        dimension = ROLLUP_DIMENSIONS.get(subject_kind)
        if dimension is not None and _on_the_hour(start) and _on_the_hour(end):
            query = sa.select(sa.func.sum(usage_rollups.c.cost)).where(
                *self._rollup_rows(workspace_id, dimension, start, end), usage_rollups.c.value == subject
            )
        else:
            query = sa.select(sa.func.sum(runs.c.cost)).where(
                *self._run_rows(workspace_id, start, end),
                *([] if subject_kind == "workspace" else [_run_column(subject_kind) == subject]),
            )
        async with self.engine.connect() as conn:
            return float(await conn.scalar(query) or 0.0)

    async def largest(
        self, workspace_id: str, subject_kind: str, start: datetime, end: datetime
    ) -> tuple[str, float] | None:
        """The subject of a kind that spent most in [start, end), and how much: what a budget of
        "each" key, deployment or end user is nearest to (None: none spent anything)."""
        dimension = ROLLUP_DIMENSIONS.get(subject_kind)
        subject: Any
        if (
            dimension is not None
            and subject_kind != "workspace"
            and _on_the_hour(start)
            and _on_the_hour(end)
        ):
            subject, cost = usage_rollups.c.value, sa.func.sum(usage_rollups.c.cost)
            query = sa.select(subject, cost).where(
                *self._rollup_rows(workspace_id, dimension, start, end), subject != NONE
            )
        else:
            subject, cost = _run_column(subject_kind), sa.func.sum(runs.c.cost)
            query = sa.select(subject, cost).where(
                *self._run_rows(workspace_id, start, end), subject.is_not(None), subject != NONE
            )
        query = query.group_by(subject).having(cost > 0).order_by(cost.desc(), subject).limit(1)
        async with self.engine.connect() as conn:
            top = (await conn.execute(query)).first()
        return None if top is None else (str(top[0]), float(top[1]))

    @staticmethod
    def _rollup_rows(workspace_id: str, dimension: str, start: datetime, end: datetime) -> list[Any]:
        return [
            usage_rollups.c.workspace_id == workspace_id,
            usage_rollups.c.dimension == dimension,
            usage_rollups.c.bucket_start >= start,
            usage_rollups.c.bucket_start < end,
        ]

    @staticmethod
    def _run_rows(workspace_id: str, start: datetime, end: datetime) -> list[Any]:
        return [runs.c.workspace_id == workspace_id, runs.c.created_at >= start, runs.c.created_at < end]


def _run_column(subject_kind: str) -> Any:
    column = RUN_COLUMNS.get(subject_kind)
    if column is None:
        raise ValueError(f"no budget subject kind {subject_kind!r}")
    return column
