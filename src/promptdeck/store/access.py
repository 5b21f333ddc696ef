"""Workspaces and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain import keys
from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.tables import api_keys, workspaces


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes.split(",")),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class AccessStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

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

    async def create_key(self, workspace_id: str, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
        """Returns the stored key and its secret, which is never shown again."""
        unknown = [s for s in scopes if s not in keys.SCOPES]
        if unknown or not scopes:
            raise ValidationFailed(
                f"scopes must be a non-empty list of {', '.join(keys.SCOPES)}; got {scopes}"
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
        }
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.insert().values(**values))
        return _key(_Obj(values)), secret

    async def find_by_hash(self, key_hash: str) -> ApiKey | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
        return _key(row) if row else None

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
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
        return _key(row)

    async def record_last_used(self, used: dict[str, datetime]) -> None:
        if not used:
            return
        async with self.engine.begin() as conn:
            for key_id, when in used.items():
                await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=when))


class _Obj:
    """Attribute access over a dict, so a freshly inserted row reads like a fetched one."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
