"""The audit log: who changed what, from where, when, and the values before and after.

Every admin action records one event (docs/governance.md, "Audit log"): keys, credentials,
members, workspaces, limits, budgets, retention and variant moves. A secret is never recorded:
values under a secret's name are replaced before anything is written.

Reading is newest first, filtered (`AuditFilters`) and paged by keyset (created_at, id), the
way the run log pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.run_filters import parse_time_params
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store import keyset_cursor
from promptdeck.store.tables import audit_events, deployments, prompt_versions, prompts

REDACTED = "[redacted]"
# Names whose values are secrets, wherever they appear in a before or after value.
SECRET_NAMES = frozenset(
    {"api_key", "secret", "password", "password_hash", "key_hash", "token", "signing_secret", "authorization"}
)
MAX_PAGE = 500
SORT, ORDER = "time", "desc"  # the one order an audit log is read in: newest first
EXPORT_PAGE = 500


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a member's email or a key's name, the key used, and where the call came from."""

    name: str
    key_id: str | None = None
    address: str = ""
    user_agent: str = ""


def _no_key() -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the request being served came from, for the writes that record themselves deep in
    a store (a variant move), where no request is at hand. `key_id` is asked when recording:
    the request's key is known only once its caller was checked."""

    address: str = ""
    user_agent: str = ""
    key_id: Callable[[], str | None] = _no_key


# Set per HTTP request by `audit_trail.RequestOrigin`; outside a request nothing is known.
request_origin: ContextVar[Origin | None] = ContextVar("audit_request_origin", default=None)


def redacted(value: Any) -> Any:
    """`value` with every secret-named field's value replaced, at any depth (keys as plain
    strings: a row's column names are a str subclass JSON writers refuse)."""
    if isinstance(value, dict):
        return {str(k): REDACTED if str(k).lower() in SECRET_NAMES else redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """Which events to read. `action` is exact (`key.created`) or, ending in `.` or `*`, a
    prefix (`key.` / `key.*`: every key action); `since` is inclusive, `until` exclusive."""

    action: str | None = None
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        action: str | None = None,
        actor: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> AuditFilters:
        """From query parameters (API and console alike); every problem reported at once (422).
        An empty value is no filter, as an emptied form field means."""
        problems: list[str] = []
        texts = {"action": action, "actor": actor, "target_type": target_type, "target_id": target_id}
        # PostgreSQL holds no NUL character in text: such a value matches nothing anywhere.
        problems += [
            f"{name}: a NUL character matches nothing" for name, v in texts.items() if v and "\x00" in v
        ]
        times = parse_time_params({"since": since or None, "until": until or None}, problems)
        if problems:
            raise ValidationFailed("invalid audit query: " + "; ".join(problems), details=problems)
        return cls(
            action or None,
            actor or None,
            target_type or None,
            target_id or None,
            times["since"],
            times["until"],
        )

    def where(self) -> list[sa.ColumnElement[bool]]:
        e = audit_events.c
        clauses: list[sa.ColumnElement[bool]] = []
        if self.action:
            if self.action.endswith(("*", ".")):
                clauses.append(e.action.startswith(self.action.rstrip("*"), autoescape=True))
            else:
                clauses.append(e.action == self.action)
        for column, value in ((e.actor, self.actor), (e.target_type, self.target_type)):
            if value:
                clauses.append(column == value)
        if self.target_id:
            clauses.append(e.target_id == self.target_id)
        if self.since is not None:
            clauses.append(e.created_at >= self.since)
        if self.until is not None:
            clauses.append(e.created_at < self.until)
        return clauses


def event_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "workspace_id": row.workspace_id,
        "actor": row.actor,
        "actor_key_id": row.actor_key_id,
        "address": row.address,
        "user_agent": row.user_agent,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "before": row.before,
        "after": row.after,
    }


async def insert_event(
    conn: AsyncConnection,
    workspace_id: str | None,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    before: Any = None,
    after: Any = None,
) -> None:
    """One event, in the caller's transaction (recorded only if the change it tells of commits)."""
    await conn.execute(
        audit_events.insert().values(
            id=new_id(),
            workspace_id=workspace_id,
            created_at=utcnow(),
            actor=actor.name[:320],
            actor_key_id=actor.key_id,
            address=actor.address[:64],
            user_agent=actor.user_agent[:300],
            action=action[:60],
            target_type=target_type[:30],
            target_id=target_id[:320],
            before=redacted(before),
            after=redacted(after),
        )
    )


async def record_move(
    conn: AsyncConnection,
    deployment_id: str,
    variant: str,
    previous: str | None,
    version_id: str,
    actor: str,
    note: str,
) -> None:
    """A `variant.moved` event beside the variant's history row, in the move's transaction:
    every move (a move, rollback, push, import, a `latest` follower) passes `variant_moves.move`,
    so none is missed, and a dry run's rolled-back moves leave no event."""
    where = (
        await conn.execute(
            sa.select(deployments.c.workspace_id, deployments.c.name, prompts.c.slug)
            .join(prompts, prompts.c.id == deployments.c.prompt_id)
            .where(deployments.c.id == deployment_id)
        )
    ).one()
    ids = [i for i in (previous, version_id) if i is not None]
    query = sa.select(prompt_versions.c.id, prompt_versions.c.number).where(prompt_versions.c.id.in_(ids))
    numbers = {str(i): int(n) for i, n in await conn.execute(query)}
    origin = request_origin.get() or Origin()
    await insert_event(
        conn,
        where.workspace_id,
        Actor(actor, origin.key_id(), origin.address, origin.user_agent),
        "variant.moved",
        "variant",
        f"{where.name}/{variant}",
        {"version": numbers.get(previous)} if previous is not None else None,
        {"prompt": where.slug, "version": numbers[version_id], "note": note},
    )


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(
        self,
        workspace_id: str | None,
        actor: Actor,
        action: str,
        target_type: str,
        target_id: str,
        before: Any = None,
        after: Any = None,
    ) -> None:
        """One event; `workspace_id` None for an instance-level action (a workspace created)."""
        async with self.engine.begin() as conn:
            await insert_event(conn, workspace_id, actor, action, target_type, target_id, before, after)

    async def page(
        self,
        workspace_id: str | None,
        filters: AuditFilters,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of a workspace's events (`workspace_id` None: the instance's own), newest
        first; pass `next_cursor` back as `cursor` for the next."""
        after = keyset_cursor.decode(cursor, SORT, ORDER, (SORT,), time_sort=SORT) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._rows(workspace_id, filters, after, limit + 1)
        data = [event_dict(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = keyset_cursor.encode(SORT, ORDER, data[-1]["created_at"], data[-1]["id"])
        return {"data": data, "next_cursor": next_cursor}

    async def iterate(self, workspace_id: str | None, filters: AuditFilters) -> AsyncIterator[dict[str, Any]]:
        """Every matching event, newest first, a page at a time (for exports)."""
        after: tuple[datetime, str] | None = None
        while True:
            rows = await self._rows(workspace_id, filters, after, EXPORT_PAGE)
            for row in rows:
                yield event_dict(row)
            if len(rows) < EXPORT_PAGE:
                return
            after = (rows[-1].created_at, rows[-1].id)

    async def _rows(
        self, workspace_id: str | None, filters: AuditFilters, after: tuple[Any, str] | None, limit: int
    ) -> list[Any]:
        e = audit_events.c
        owner = e.workspace_id.is_(None) if workspace_id is None else e.workspace_id == workspace_id
        query = sa.select(audit_events).where(owner, *filters.where())
        if after is not None:
            when, last = after
            query = query.where(sa.or_(e.created_at < when, sa.and_(e.created_at == when, e.id < last)))
        query = query.order_by(e.created_at.desc(), e.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())
