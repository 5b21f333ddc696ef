"""A session's runs read together: its totals, and its runs in time order a page at a time.

Both read the runs of one (workspace, session) through the `ix_runs_workspace_session_created`
index, so they cost the session's own runs whatever the size of the log. The pages are the run
log's keyset pages (`RunLog.page`, oldest first): a conversation reads top to bottom.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import NotFound
from promptdeck.domain.run_filters import RunFilters
from promptdeck.store.run_log import RunLog
from promptdeck.store.tables import runs


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class RunSessions:
    def __init__(self, engine: AsyncEngine, run_log: RunLog) -> None:
        self.engine = engine
        self.run_log = run_log

    async def totals(self, workspace_id: str, session_id: str) -> dict[str, Any]:
        """How many runs, what they cost (`cost`: the runs with a known price; `unpriced_runs`
        the others), their tokens, which deployments served them and when: from the first run's
        start to the last one's end (`span_ms`). NotFound when the session has no stored run."""
        where = (runs.c.workspace_id == workspace_id, runs.c.session_id == session_id)
        errors = sa.func.sum(sa.case((runs.c.status == "error", 1), else_=0))
        async with self.engine.connect() as conn:
            summed = (
                await conn.execute(
                    sa.select(
                        sa.func.count().label("runs"),
                        errors.label("errors"),
                        sa.func.count(runs.c.cost).label("priced"),
                        sa.func.sum(runs.c.cost).label("cost"),
                        sa.func.sum(runs.c.saved_cost).label("saved_cost"),
                        sa.func.sum(runs.c.input_tokens).label("input_tokens"),
                        sa.func.sum(runs.c.output_tokens).label("output_tokens"),
                        sa.func.sum(runs.c.duration_ms).label("duration_ms"),
                        sa.func.min(runs.c.created_at).label("first_at"),
                    ).where(*where)
                )
            ).one()
            if not summed.runs:
                raise NotFound(f"no runs in session {session_id!r} in this workspace")
            last = (
                await conn.execute(
                    sa.select(runs.c.created_at, runs.c.duration_ms)
                    .where(*where)
                    .order_by(runs.c.created_at.desc())
                    .limit(1)
                )
            ).one()
            deployments = (
                await conn.execute(
                    sa.select(runs.c.deployment, sa.func.count().label("runs"))
                    .where(*where)
                    .group_by(runs.c.deployment)
                    .order_by(sa.func.min(runs.c.created_at))
                )
            ).all()
        first_at, last_at = _aware(summed.first_at), _aware(last.created_at)
        ended = last_at + timedelta(milliseconds=float(last.duration_ms or 0))
        return {
            "runs": int(summed.runs),
            "errors": int(summed.errors or 0),
            "cost": float(summed.cost) if summed.priced else None,
            "unpriced_runs": int(summed.runs) - int(summed.priced),
            "saved_cost": float(summed.saved_cost) if summed.saved_cost is not None else None,
            "input_tokens": int(summed.input_tokens or 0),
            "output_tokens": int(summed.output_tokens or 0),
            "duration_ms": float(summed.duration_ms or 0),
            "first_at": first_at,
            "last_at": last_at,
            "span_ms": round((ended - first_at).total_seconds() * 1000, 3),
            "deployments": [{"deployment": name, "runs": int(count)} for name, count in deployments],
        }

    async def page(
        self, workspace_id: str, session_id: str, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of the session's runs, oldest first; `next_cursor` for the next."""
        return await self.run_log.page(
            workspace_id, limit, cursor, RunFilters(session=session_id), sort="time", order="asc"
        )
