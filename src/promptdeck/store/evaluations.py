"""Evaluations and their per-case results (docs/evaluations.md).

The runner (engine/evaluations.py) creates a row, adds results in batches as cases finish (each
batch also advances `completed`, so progress can be read while it runs) and ends it with its
summary. Results are keyed by (evaluation, case position): a case is stored once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import NotFound
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.database import without_nul
from promptdeck.store.tables import datasets, evaluation_results, evaluations, prompts

QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
UNFINISHED = (QUEUED, RUNNING)
LIST_LIMIT_MAX = 500
INTERRUPTED = "interrupted: the server stopped while it ran"

COLUMNS = (
    evaluations.c.id,
    prompts.c.slug.label("prompt"),
    evaluations.c.dataset_id,
    datasets.c.name.label("dataset"),  # its name now; None once deleted
    evaluations.c.target,
    evaluations.c.version_number,
    evaluations.c.evaluators,
    evaluations.c.status,
    evaluations.c.total,
    evaluations.c.completed,
    evaluations.c.concurrency,
    evaluations.c.summary,
    evaluations.c.error,
    evaluations.c.actor,
    evaluations.c.created_at,
    evaluations.c.finished_at,
)
FROM = evaluations.join(prompts, prompts.c.id == evaluations.c.prompt_id).outerjoin(
    datasets, datasets.c.id == evaluations.c.dataset_id
)
RESULT_COLUMNS = tuple(c for c in evaluation_results.c if c.name != "evaluation_id")


def _as_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data["version"] = data.pop("version_number")
    return data


class EvaluationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self,
        workspace_id: str,
        prompt_id: str,
        dataset_id: str,
        target: Mapping[str, Any],
        version_number: int | None,
        evaluators: Sequence[Mapping[str, Any]],
        total: int,
        concurrency: int,
        actor: str,
    ) -> str:
        evaluation_id = new_id()
        async with self.engine.begin() as conn:
            await conn.execute(
                evaluations.insert().values(
                    id=evaluation_id,
                    workspace_id=workspace_id,
                    prompt_id=prompt_id,
                    dataset_id=dataset_id,
                    target=dict(target),
                    version_number=version_number,
                    evaluators=[dict(spec) for spec in evaluators],
                    status=QUEUED,
                    total=total,
                    completed=0,
                    concurrency=concurrency,
                    actor=actor[:200],
                    created_at=utcnow(),
                )
            )
        return evaluation_id

    async def get(self, workspace_id: str, evaluation_id: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(*COLUMNS)
                    .select_from(FROM)
                    .where(evaluations.c.workspace_id == workspace_id, evaluations.c.id == evaluation_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no evaluation {evaluation_id!r} in this workspace")
        return _as_dict(row)

    async def of_prompt(self, workspace_id: str, prompt_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """A prompt's evaluations, newest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(*COLUMNS)
                .select_from(FROM)
                .where(evaluations.c.workspace_id == workspace_id, evaluations.c.prompt_id == prompt_id)
                .order_by(evaluations.c.created_at.desc(), evaluations.c.id.desc())
                .limit(min(limit, LIST_LIMIT_MAX))
            )
            return [_as_dict(r) for r in rows]

    async def newest_done(
        self,
        workspace_id: str,
        prompt_id: str,
        dataset_id: str,
        version_number: int,
        evaluators: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any] | None:
        """The newest finished evaluation of this exact version and dataset, judged by these
        evaluators (compared as data: the same specs in the same order)."""
        wanted = [dict(spec) for spec in evaluators]
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(*COLUMNS)
                .select_from(FROM)
                .where(
                    evaluations.c.workspace_id == workspace_id,
                    evaluations.c.prompt_id == prompt_id,
                    evaluations.c.dataset_id == dataset_id,
                    evaluations.c.version_number == version_number,
                    evaluations.c.status == DONE,
                )
                .order_by(evaluations.c.created_at.desc(), evaluations.c.id.desc())
                .limit(20)
            )
            for row in rows:
                if row.evaluators == wanted and "draft" not in row.target:
                    return _as_dict(row)
        return None

    async def results(self, workspace_id: str, evaluation_id: str) -> list[dict[str, Any]]:
        """Every stored case result, in the dataset's order."""
        await self.get(workspace_id, evaluation_id)  # 404 for another workspace's
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(*RESULT_COLUMNS)
                .where(evaluation_results.c.evaluation_id == evaluation_id)
                .order_by(evaluation_results.c.position)
            )
            return [dict(r._mapping) for r in rows]

    async def add_results(self, evaluation_id: str, results: Sequence[Mapping[str, Any]]) -> None:
        """Store a batch of case results and advance the evaluation's progress, in one transaction."""
        if not results:
            return
        rows = [
            {
                **result,
                "evaluation_id": evaluation_id,
                "output": without_nul(result["output"]),
                "error": without_nul(result["error"]) if result.get("error") else result.get("error"),
            }
            for result in results
        ]
        async with self.engine.begin() as conn:
            await conn.execute(evaluation_results.insert(), rows)
            await conn.execute(
                evaluations.update()
                .where(evaluations.c.id == evaluation_id)
                .values(completed=evaluations.c.completed + len(rows))
            )

    async def set_running(self, evaluation_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                evaluations.update()
                .where(evaluations.c.id == evaluation_id)
                .values(status=RUNNING, heartbeat_at=utcnow())
            )

    async def beat(self, evaluation_ids: list[str]) -> None:
        """The evaluations this replica runs are alive (`end_interrupted` leaves them be)."""
        if not evaluation_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                evaluations.update()
                .where(evaluations.c.id.in_(evaluation_ids), evaluations.c.status.in_(UNFINISHED))
                .values(heartbeat_at=utcnow())
            )

    async def finish(
        self, evaluation_id: str, status: str, summary: Mapping[str, Any] | None, error: str | None = None
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                evaluations.update()
                .where(evaluations.c.id == evaluation_id, evaluations.c.status.in_(UNFINISHED))
                .values(
                    status=status,
                    summary=dict(summary) if summary is not None else None,
                    error=error,
                    finished_at=utcnow(),
                )
            )

    async def end_interrupted(self, silent_since: datetime, keep: Collection[str] = ()) -> int:
        """Mark as failed every unfinished evaluation no replica has said is alive since
        `silent_since` (its heartbeat, or its creation when it never started), except `keep`
        (this process's own). Returns how many."""
        last_sign = sa.func.coalesce(evaluations.c.heartbeat_at, evaluations.c.created_at)
        condition = evaluations.c.status.in_(UNFINISHED) & (last_sign < silent_since)
        if keep:
            condition = condition & evaluations.c.id.not_in(list(keep))
        async with self.engine.begin() as conn:
            result = await conn.execute(
                evaluations.update()
                .where(condition)
                .values(status=FAILED, error=INTERRUPTED, finished_at=utcnow())
            )
            return int(result.rowcount or 0)
