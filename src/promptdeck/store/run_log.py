"""Reading the run log: filtered and sorted pages with keyset cursors, exports fetched page by
page, the metadata keys in use, and single runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import NotFound
from promptdeck.domain.run_filters import Order, RunFilters, Sort
from promptdeck.domain.runs import RunRecord, utcnow
from promptdeck.domain.usage_dimensions import META_KEY, hour_of, meta_dimension
from promptdeck.store import keyset_cursor
from promptdeck.store.run_log_plan import SORT_KEYS, page_statement
from promptdeck.store.tables import runs, usage_rollups

MAX_PAGE = 200
EXPORT_PAGE = 500
KEYS_WINDOW = timedelta(days=7)  # metadata keys are those seen in the last 7 days
MAX_KEYS = 100
EXAMPLES_PER_KEY = 5
EXAMPLES_WINDOW = timedelta(days=1)  # a key's examples: its values of the last day it was used
HOUR = timedelta(hours=1)


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run_dict(row: Any) -> dict[str, Any]:
    # plain str keys (SQLAlchemy's are a str subclass, which orjson refuses as keys)
    data = {str(k): v for k, v in row._mapping.items()} if not isinstance(row, RunRecord) else row.as_row()
    data["created_at"] = _aware(data["created_at"])
    return data


def sort_value(row: Any, sort: str) -> Any:
    if sort == "time":
        return _aware(row.created_at)
    if sort == "latency":
        return float(row.duration_ms)
    if sort == "cost":
        return float(row.cost) if row.cost is not None else -1.0
    return int(row.input_tokens) + int(row.output_tokens)


class RunLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def page(
        self,
        workspace_id: str,
        limit: int = 50,
        cursor: str | None = None,
        filters: RunFilters | None = None,
        sort: Sort = "time",
        order: Order = "desc",
    ) -> dict[str, Any]:
        """One page of matching runs. The cursor is a position (sort value, id), so runs that
        arrive while a caller pages never shift or repeat what it sees."""
        limit = max(1, min(limit, MAX_PAGE))
        after = keyset_cursor.decode(cursor, sort, order, SORT_KEYS, time_sort="time") if cursor else None
        async with self.engine.connect() as conn:
            query, _ = await page_statement(
                conn, workspace_id, filters or RunFilters(), sort, order, after, limit + 1
            )
            rows = (await conn.execute(query)).all()
        items = [run_dict(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = keyset_cursor.encode(sort, order, sort_value(last, sort), last.id)
        return {"data": items, "next_cursor": next_cursor}

    async def iterate(
        self,
        workspace_id: str,
        filters: RunFilters,
        sort: Sort = "time",
        order: Order = "desc",
        page_size: int = EXPORT_PAGE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, fetched a page at a time by keyset (for exports)."""
        after: tuple[Any, str] | None = None
        while True:
            async with self.engine.connect() as conn:
                query, _ = await page_statement(conn, workspace_id, filters, sort, order, after, page_size)
                rows = (await conn.execute(query)).all()
            for row in rows:
                yield run_dict(row)
            if len(rows) < page_size:
                return
            after = (sort_value(rows[-1], sort), rows[-1].id)

    async def metadata_keys(self, workspace_id: str, now: datetime | None = None) -> dict[str, Any]:
        """The metadata keys of the last KEYS_WINDOW's runs, most used first, each with how many
        runs carry it and its most common values over the last EXAMPLES_WINDOW it was used in.

        Read from the usage rollups (`metakey`: runs per key and hour; `meta:<key>`: runs per
        value and hour), never from `run_metadata`, whose rows of a week are millions at scale:
        so the window starts at a whole UTC hour, and what the rollups leave out is left out
        here too — keys and values longer than META_TEXT_MAX characters, and those past the
        per-hour caps (domain/usage_dimensions.py). Examples cover a day, not the week: a key
        with a value per run (a session id) has a rollup row per run, and a week of them is
        what made reading run_metadata slow."""
        since = hour_of((now or utcnow()) - KEYS_WINDOW)
        r = usage_rollups
        runs = sa.func.sum(r.c.runs)
        last_used = sa.func.max(sa.case((r.c.runs > 0, r.c.bucket_start))).label("last_used")
        async with self.engine.connect() as conn:
            keys = (
                await conn.execute(
                    sa.select(r.c.value, runs, last_used)
                    .where(
                        r.c.workspace_id == workspace_id, r.c.dimension == META_KEY, r.c.bucket_start >= since
                    )
                    .group_by(r.c.value)
                    .having(runs > 0)  # rows of feedback only have no runs
                    .order_by(runs.desc(), r.c.value)
                    .limit(MAX_KEYS)
                )
            ).all()
            data = []
            for key, count, last in keys:
                last = _aware(last)
                examples = (
                    await conn.execute(
                        sa.select(r.c.value)
                        .where(
                            r.c.workspace_id == workspace_id,
                            r.c.dimension == meta_dimension(key),
                            r.c.bucket_start >= max(since, last - EXAMPLES_WINDOW + HOUR),
                            r.c.bucket_start <= last,
                        )
                        .group_by(r.c.value)
                        .having(runs > 0)
                        .order_by(runs.desc(), r.c.value)
                        .limit(EXAMPLES_PER_KEY)
                    )
                ).scalars()
                data.append({"key": key, "count": int(count), "examples": list(examples)})
        return {"data": data, "since": since}

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
