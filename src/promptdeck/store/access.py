"""Workspaces and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain import keys
from promptdeck.domain.change_events import AccessChanged, ChangeFeed
from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.tables import api_keys, workspaces
from promptdeck.store.tables import deployments as deployment_rows


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    workspace_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    deployments: tuple[str, ...] | None = None  # None: every deployment
    expires_at: datetime | None = None
    rotated_from: str | None = None
    instance_admin: bool = False
    workspace_archived_at: datetime | None = None  # only from `find_by_hash`, which joins it

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "deployments": list(self.deployments) if self.deployments is not None else None,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "rotated_from": self.rotated_from,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def _key(row: Any, archived_at: datetime | None = None) -> ApiKey:
    return ApiKey(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes.split(",")),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        deployments=tuple(row.deployments) if row.deployments is not None else None,
        expires_at=row.expires_at,
        rotated_from=row.rotated_from,
        instance_admin=bool(row.instance_admin),
        workspace_archived_at=archived_at,
    )


class AccessStore:
    """Workspaces and their API keys. Every committed key write publishes `AccessChanged`, so
    each replica's key cache (engine/auth.KeyCheck) looks the keys up again."""

    def __init__(self, engine: AsyncEngine, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.changes = changes or ChangeFeed()

    async def first_workspace(self, name: str = "default") -> str:
        """The oldest workspace's id, creating one when there is none."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(sa.select(workspaces.c.id).order_by(workspaces.c.created_at).limit(1))
            ).first()
            if row is not None:
                return str(row.id)
            workspace_id = new_id()
            await conn.execute(workspaces.insert().values(id=workspace_id, name=name, created_at=utcnow()))
            return workspace_id

    async def create_workspace(self, name: str) -> str:
        workspace_id = new_id()
        async with self.engine.begin() as conn:
            await conn.execute(workspaces.insert().values(id=workspace_id, name=name, created_at=utcnow()))
        return workspace_id

    async def create_key(
        self,
        workspace_id: str,
        name: str,
        scopes: list[str],
        *,
        deployments: list[str] | None = None,
        expires_at: datetime | None = None,
        instance_admin: bool = False,
    ) -> tuple[ApiKey, str]:
        """Returns the stored key and its secret, which is never shown again. `deployments` must
        name deployments that exist now (a typo would make a key that can call nothing)."""
        async with self.engine.begin() as conn:
            if deployments is not None:
                await _check_deployments(conn, workspace_id, deployments)
            key, secret = await self._insert_key(
                conn,
                workspace_id,
                name,
                scopes,
                deployments=deployments,
                expires_at=expires_at,
                instance_admin=instance_admin,
            )
        self.changes.publish(AccessChanged(workspace_id))
        return key, secret

    async def _insert_key(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        name: str,
        scopes: list[str] | tuple[str, ...],
        *,
        deployments: list[str] | tuple[str, ...] | None,
        expires_at: datetime | None,
        instance_admin: bool = False,
        rotated_from: str | None = None,
    ) -> tuple[ApiKey, str]:
        unknown = [s for s in scopes if s not in keys.SCOPES]
        if unknown or not scopes:
            raise ValidationFailed(
                f"scopes must be a non-empty list of {', '.join(keys.SCOPES)}; got {list(scopes)}"
            )
        secret = keys.new_key()
        values = {
            "id": new_id(),
            "workspace_id": workspace_id,
            "name": name,
            "prefix": keys.visible_prefix(secret),
            "key_hash": keys.hash_key(secret),
            "scopes": ",".join(dict.fromkeys(scopes)),
            "created_at": utcnow(),
            "last_used_at": None,
            "revoked_at": None,
            "deployments": list(dict.fromkeys(deployments)) if deployments is not None else None,
            "expires_at": expires_at,
            "rotated_from": rotated_from,
            "instance_admin": instance_admin,
        }
        await conn.execute(api_keys.insert().values(**values))
        return _key(_Obj(values)), secret

    async def find_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with its workspace's archive time, so an archived workspace's keys are refused."""
        query = (
            sa.select(api_keys, workspaces.c.archived_at.label("workspace_archived_at"))
            .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
            .where(api_keys.c.key_hash == key_hash)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _key(row, row.workspace_archived_at) if row else None

    async def get_key(self, workspace_id: str, key_id: str) -> ApiKey:
        async with self.engine.connect() as conn:
            return await self._get(conn, workspace_id, key_id)

    async def _get(self, conn: AsyncConnection, workspace_id: str, key_id: str) -> ApiKey:
        row = (
            await conn.execute(
                sa.select(api_keys).where(api_keys.c.id == key_id, api_keys.c.workspace_id == workspace_id)
            )
        ).first()
        if row is None:
            raise NotFound(f"no API key {key_id!r} in this workspace")
        return _key(row)

    async def list_keys(self, workspace_id: str) -> list[ApiKey]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(api_keys)
                .where(api_keys.c.workspace_id == workspace_id)
                .order_by(api_keys.c.created_at)
            )
            return [_key(r) for r in rows]

    async def revoke_key(self, workspace_id: str, key_id: str) -> ApiKey:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.workspace_id == workspace_id)
                .values(revoked_at=sa.func.coalesce(api_keys.c.revoked_at, utcnow()))
            )
            if result.rowcount == 0:
                raise NotFound(f"no API key {key_id!r} in this workspace")
            key = await self._get(conn, workspace_id, key_id)
        self.changes.publish(AccessChanged(workspace_id))
        return key

    async def rotate_key(
        self,
        workspace_id: str,
        key_id: str,
        old_expires_at: datetime,
        *,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, ApiKey, str]:
        """A new key with the old one's name, scopes and deployments, and the old key's expiry
        brought forward to `old_expires_at` (never pushed later than it already was). The new key
        expires at `expires_at`, or else lives as long as the old one was made to (a 30-day key
        rotated is a 30-day key again). Returns (old key as it is now, new key, new secret)."""
        async with self.engine.begin() as conn:
            old = await self._get(conn, workspace_id, key_id)
            if old.revoked_at is not None:
                raise ValidationFailed(f"API key {key_id!r} is revoked; create a new key instead")
            now = utcnow()
            if old.expires_at is not None and old.expires_at <= now:
                raise ValidationFailed(f"API key {key_id!r} has expired; create a new key instead")
            until = min(old_expires_at, old.expires_at) if old.expires_at is not None else old_expires_at
            if expires_at is None and old.expires_at is not None:
                expires_at = now + (old.expires_at - old.created_at)
            await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(expires_at=until))
            new, secret = await self._insert_key(
                conn,
                workspace_id,
                old.name,
                old.scopes,
                deployments=old.deployments,
                expires_at=expires_at,
                instance_admin=old.instance_admin,
                rotated_from=old.id,
            )
            old = await self._get(conn, workspace_id, key_id)
        self.changes.publish(AccessChanged(workspace_id))
        return old, new, secret

    async def record_last_used(self, used: dict[str, datetime]) -> None:
        if not used:
            return
        async with self.engine.begin() as conn:
            for key_id, when in used.items():
                await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=when))


async def _check_deployments(conn: AsyncConnection, workspace_id: str, names: list[str]) -> None:
    if not names:
        raise ValidationFailed("deployments: name at least one, or leave it out for every deployment")
    found = set(
        (
            await conn.execute(
                sa.select(deployment_rows.c.name).where(
                    deployment_rows.c.workspace_id == workspace_id, deployment_rows.c.name.in_(names)
                )
            )
        ).scalars()
    )
    if missing := [n for n in names if n not in found]:
        raise ValidationFailed(f"deployments: no deployment named {', '.join(map(repr, missing))} here")


class _Obj:
    """Attribute access over a dict, so a freshly inserted row reads like a fetched one."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
