"""Workspaces as an instance administrator sees them: create, list, rename, archive, restore,
and who the instance administrators are.

Archiving keeps every row. It stamps `archived_at`, ends the sessions of the workspace's
console members and publishes `AccessChanged`, so every replica drops the workspace's cached
keys, which `KeyCheck` then refuses (the key's row carries the archive time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.change_events import AccessChanged, ChangeFeed
from promptdeck.domain.errors import Conflict, NotFound, ValidationFailed
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.access import AccessStore, ApiKey
from promptdeck.store.console_members import Member, MemberStore
from promptdeck.store.tables import api_keys, console_members, console_sessions, workspaces

NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    created_at: datetime
    archived_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "archived_at": self.archived_at,
        }


def _workspace(row: Any) -> Workspace:
    return Workspace(row.id, row.name, row.created_at, row.archived_at)


def check_name(name: str) -> str:
    """A workspace's name: trimmed, 1 to NAME_MAX characters."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise ValidationFailed(f"name: give the workspace a name of 1 to {NAME_MAX} characters")
    return name


_COLUMNS = (workspaces.c.id, workspaces.c.name, workspaces.c.created_at, workspaces.c.archived_at)


class WorkspaceStore:
    def __init__(self, engine: AsyncEngine, changes: ChangeFeed) -> None:
        self.engine = engine
        self.changes = changes

    async def all(self) -> list[Workspace]:
        """Every workspace, oldest first, archived ones included."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(*_COLUMNS).order_by(workspaces.c.created_at, workspaces.c.id))
            return [_workspace(r) for r in rows]

    async def get(self, workspace_id: str) -> Workspace:
        async with self.engine.connect() as conn:
            return await _get(conn, workspace_id)

    async def create(self, name: str) -> Workspace:
        created = Workspace(new_id(), await self._free_name(check_name(name)), utcnow(), None)
        async with self.engine.begin() as conn:
            await conn.execute(
                workspaces.insert().values(id=created.id, name=created.name, created_at=created.created_at)
            )
        return created

    async def rename(self, workspace_id: str, name: str) -> Workspace:
        name = await self._free_name(check_name(name), workspace_id)
        async with self.engine.begin() as conn:
            await _get(conn, workspace_id)
            await conn.execute(workspaces.update().where(workspaces.c.id == workspace_id).values(name=name))
            return await _get(conn, workspace_id)

    async def _free_name(self, name: str, renaming: str | None = None) -> str:
        """`name`, unless another workspace has it (any case): the switcher tells them apart by name."""
        query = sa.select(workspaces.c.id).where(sa.func.lower(workspaces.c.name) == name.lower())
        if renaming is not None:
            query = query.where(workspaces.c.id != renaming)
        async with self.engine.connect() as conn:
            if (await conn.execute(query)).first() is not None:
                raise Conflict(f"a workspace named {name!r} exists already; choose another name")
        return name

    async def archive(self, workspace_id: str, current: str | None = None) -> Workspace:
        """Archive (idempotent): keys refused, sessions ended, data kept. Neither the caller's
        `current` workspace (they would lock themselves out mid-task) nor the last active one
        (nobody could work in the instance any more) can be archived."""
        if workspace_id == current:
            raise Conflict("you are working in this workspace; archive it from another one")
        async with self.engine.begin() as conn:
            found = await _get(conn, workspace_id)
            if found.archived_at is None:
                active = sa.select(sa.func.count()).where(workspaces.c.archived_at.is_(None))
                if (await conn.execute(active)).scalar_one() <= 1:
                    raise Conflict("this is the last active workspace; create or restore another first")
                await conn.execute(
                    workspaces.update().where(workspaces.c.id == workspace_id).values(archived_at=utcnow())
                )
                members = sa.select(console_members.c.id).where(
                    console_members.c.workspace_id == workspace_id
                )
                await conn.execute(console_sessions.delete().where(console_sessions.c.member_id.in_(members)))
            archived = await _get(conn, workspace_id)
        self.changes.publish(AccessChanged(workspace_id))
        return archived

    async def restore(self, workspace_id: str) -> Workspace:
        async with self.engine.begin() as conn:
            await _get(conn, workspace_id)
            await conn.execute(
                workspaces.update().where(workspaces.c.id == workspace_id).values(archived_at=None)
            )
            restored = await _get(conn, workspace_id)
        self.changes.publish(AccessChanged(workspace_id))
        return restored

    async def memberships(self, email: str) -> list[Workspace]:
        """The active workspaces where `email` is an enabled console member, oldest membership first."""
        query = (
            sa.select(*_COLUMNS)
            .join(console_members, console_members.c.workspace_id == workspaces.c.id)
            .where(
                console_members.c.email == email,
                console_members.c.disabled_at.is_(None),
                workspaces.c.archived_at.is_(None),
            )
            .order_by(console_members.c.created_at)
        )
        async with self.engine.connect() as conn:
            return [_workspace(r) for r in await conn.execute(query)]

    async def make_instance_admin_key(self, key_id: str) -> None:
        """For a key `init` reuses from before instance administrators existed."""
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(instance_admin=True))
            key_workspace = sa.select(api_keys.c.workspace_id).where(api_keys.c.id == key_id)
            workspace_id = (await conn.execute(key_workspace)).scalar_one()
        self.changes.publish(AccessChanged(workspace_id))

    async def make_instance_admin_member(self, email: str) -> None:
        """Every membership of `email` (one person: one password, one standing)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                console_members.update().where(console_members.c.email == email).values(instance_admin=True)
            )

    async def has_instance_admin_member(self) -> bool:
        query = sa.select(console_members.c.id).where(console_members.c.instance_admin.is_(True)).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None


async def _get(conn: AsyncConnection, workspace_id: str) -> Workspace:
    row = (await conn.execute(sa.select(*_COLUMNS).where(workspaces.c.id == workspace_id))).first()
    if row is None:
        raise NotFound(f"no workspace {workspace_id!r}")
    return _workspace(row)


@dataclass(frozen=True, slots=True)
class Opened:
    """A new workspace, the admin key made for it (its secret shown once) and, when a console
    member created it, their owner membership."""

    workspace: Workspace
    key: ApiKey
    secret: str
    owner: Member | None


async def open_workspace(
    store: WorkspaceStore, access: AccessStore, members: MemberStore, name: str, owner_email: str | None
) -> Opened:
    """Create a workspace ready to work in: an admin key, and its creator as owner when the
    creator is a console member (so the switcher offers it at once)."""
    workspace = await store.create(name)
    key, secret = await access.create_key(workspace.id, "admin", ["admin"])
    owner = await members.join(workspace.id, owner_email, "owner") if owner_email else None
    return Opened(workspace, key, secret, owner)
