"""Reading the run log: newest first with keyset cursors, and single runs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.domain.runs import RunRecord
from promptdeck.store.tables import runs

MAX_PAGE = 200


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def encode_cursor(created_at: datetime, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_aware(created_at).isoformat()}|{run_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        when, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(when), run_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not one this server gave out") from exc


def run_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping) if not isinstance(row, RunRecord) else row.as_row()
    data["created_at"] = _aware(data["created_at"])
    return data


class RunLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def page(self, workspace_id: str, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Runs newest first. The cursor is a position (time, id), so runs that arrive while a
        caller pages never shift or repeat what it sees."""
        limit = max(1, min(limit, MAX_PAGE))
        query = sa.select(runs).where(runs.c.workspace_id == workspace_id)
        if cursor:
            when, run_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(runs.c.created_at < when, sa.and_(runs.c.created_at == when, runs.c.id < run_id))
            )
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [run_dict(r) for r in rows[:limit]]
        next_cursor = (
            encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
        )
        return {"data": items, "next_cursor": next_cursor}

    async def get(self, workspace_id: str, run_id: str) -> dict[str, Any]:
        """One run by its id or its request id."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(runs).where(
                        runs.c.workspace_id == workspace_id,
                        sa.or_(runs.c.id == run_id, runs.c.request_id == run_id),
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"no run {run_id!r} in this workspace")
        return run_dict(row)
