"""What a variant's runs say: the inputs its callers sent lately, and per-version statistics."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from promptdeck.domain.runs import ERROR
from promptdeck.store.tables import feedback, runs


def _of_variant(workspace_id: str, deployment: str, variant: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        runs.c.workspace_id == workspace_id, runs.c.deployment == deployment, runs.c.variant == variant
    )


async def recent_inputs(
    conn: AsyncConnection, workspace_id: str, deployment: str, variant: str, limit: int
) -> list[dict[str, Any]]:
    """The inputs of the variant's latest `limit` runs, newest first."""
    rows = await conn.execute(
        sa.select(runs.c.inputs)
        .where(_of_variant(workspace_id, deployment, variant))
        .order_by(runs.c.created_at.desc())
        .limit(limit)
    )
    return [dict(r.inputs) if isinstance(r.inputs, dict) else {} for r in rows]


async def version_stats(
    conn: AsyncConnection, workspace_id: str, deployment: str, variant: str
) -> list[dict[str, Any]]:
    """Per version served: runs, error rate, mean latency, tokens, cost, mean feedback score."""
    where = _of_variant(workspace_id, deployment, variant)
    rows = await conn.execute(
        sa.select(
            runs.c.version_number,
            sa.func.count().label("runs"),
            sa.func.sum(sa.case((runs.c.status == ERROR, 1), else_=0)).label("errors"),
            sa.func.avg(runs.c.duration_ms).label("mean_latency_ms"),
            sa.func.sum(runs.c.input_tokens).label("input_tokens"),
            sa.func.sum(runs.c.output_tokens).label("output_tokens"),
            sa.func.sum(runs.c.cost).label("cost"),
        )
        .where(where)
        .group_by(runs.c.version_number)
        .order_by(runs.c.version_number)
    )
    scores = await conn.execute(
        sa.select(
            runs.c.version_number,
            sa.func.avg(feedback.c.quality).label("score"),
            sa.func.count(feedback.c.quality).label("scored"),
        )
        .join(feedback, sa.and_(feedback.c.run_id == runs.c.id, feedback.c.workspace_id == workspace_id))
        .where(where, feedback.c.quality.is_not(None))
        .group_by(runs.c.version_number)
    )
    by_version = {r.version_number: (float(r.score), int(r.scored)) for r in scores}
    out = []
    for r in rows:
        count, errors = int(r.runs), int(r.errors or 0)
        score = by_version.get(r.version_number)
        out.append(
            {
                "version": r.version_number,
                "runs": count,
                "errors": errors,
                "error_rate": errors / count if count else 0.0,
                "mean_latency_ms": float(r.mean_latency_ms) if r.mean_latency_ms is not None else None,
                "input_tokens": int(r.input_tokens or 0),
                "output_tokens": int(r.output_tokens or 0),
                "cost": float(r.cost) if r.cost is not None else None,
                "mean_feedback_score": score[0] if score else None,
                "feedback_count": score[1] if score else 0,
            }
        )
    return out
