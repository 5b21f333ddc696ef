"""The end users a workspace's callers named (`end_user`, Fetch Hive's `user`): when each was
first and last seen, and their runs, errors, tokens and cost — kept by the run writer in
`end_users` (store/usage_rollups.py), so listing them never reads the runs. Pages use keyset
cursors, like the run log's."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.store import keyset_cursor
from promptdeck.store.tables import end_users

MAX_PAGE = 200
SORTS: dict[str, Any] = {
    "last_seen": end_users.c.last_seen,
    "runs": end_users.c.runs,
    "cost": end_users.c.cost,
}
ORDERS = ("desc", "asc")


def runs_url(end_user: str) -> str:
    """Where the admin API lists one end user's runs."""
    return "/api/runs?user=" + quote(end_user, safe="")


def user_dict(row: Any) -> dict[str, Any]:
    runs, errors = int(row.runs), int(row.errors)
    input_tokens, output_tokens = int(row.input_tokens), int(row.output_tokens)
    return {
        "end_user": row.end_user,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "runs": runs,
        "errors": errors,
        "error_rate": errors / runs if runs else None,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tokens": input_tokens + output_tokens,
        "cost": float(row.cost),
        "runs_url": runs_url(row.end_user),
    }


def check_sort(sort: str, order: str) -> list[str]:
    problems = []
    if sort not in SORTS:
        problems.append(f"sort: expected one of {', '.join(SORTS)}; got {sort!r}")
    if order not in ORDERS:
        problems.append(f"order: expected one of {', '.join(ORDERS)}; got {order!r}")
    return problems


class EndUsers:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def page(
        self,
        workspace_id: str,
        sort: str = "last_seen",
        order: str = "desc",
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of end users, sorted by (sort value, end user); `q` keeps those whose name
        starts with it (case-sensitive)."""
        problems = check_sort(sort, order)
        if q is not None and not q:
            problems.append("q: expected the start of an end user's name")
        if problems:
            raise ValidationFailed("invalid end user query: " + "; ".join(problems), details=problems)
        limit = max(1, min(limit, MAX_PAGE))
        key, name = SORTS[sort], end_users.c.end_user
        query = sa.select(end_users).where(end_users.c.workspace_id == workspace_id)
        if q is not None:
            query = query.where(sa.func.substr(name, 1, len(q)) == q)
        if cursor:
            value, after = keyset_cursor.decode(cursor, sort, order, SORTS, time_sort="last_seen")
            if order == "desc":
                query = query.where(sa.or_(key < value, sa.and_(key == value, name < after)))
            else:
                query = query.where(sa.or_(key > value, sa.and_(key == value, name > after)))
        ordering = (key.desc(), name.desc()) if order == "desc" else (key.asc(), name.asc())
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(*ordering).limit(limit + 1))).all()
        data = [user_dict(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = data[-1]
            next_cursor = keyset_cursor.encode(sort, order, last[sort], last["end_user"])
        return {"data": data, "next_cursor": next_cursor}

    async def get(self, workspace_id: str, end_user: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(end_users).where(
                        end_users.c.workspace_id == workspace_id, end_users.c.end_user == end_user
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"no end user {end_user!r} in this workspace")
        return user_dict(row)
