"""A workspace's webhook endpoints, each with its signing secret encrypted at rest (Fernet, the
server secret that encrypts provider credentials).

The secret is shown once, when made (created or rotated); no listing, answer or log line holds it
after that. It is decrypted only to sign a delivery.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.domain.webhook_events import new_secret
from promptdeck.store.tables import webhook_attempts, webhook_deliveries, webhook_endpoints

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

PUBLIC = (
    webhook_endpoints.c.id,
    webhook_endpoints.c.url,
    webhook_endpoints.c.description,
    webhook_endpoints.c.events,
    webhook_endpoints.c.enabled,
    webhook_endpoints.c.created_at,
    webhook_endpoints.c.updated_at,
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to deliver: what the dispatcher needs, the secret decrypted."""

    id: str
    workspace_id: str
    url: str
    secret: str
    enabled: bool


class WebhookEndpoints:
    def __init__(self, engine: AsyncEngine, secret_key: bytes) -> None:
        self.engine = engine
        self.secret_key = secret_key

    async def create(
        self, workspace_id: str, url: str, events: list[str], description: str = ""
    ) -> tuple[dict[str, Any], str]:
        """The new endpoint and its secret (the only time it is returned)."""
        secret, now = new_secret(), utcnow()
        endpoint_id = new_id()
        async with self.engine.begin() as conn:
            await conn.execute(
                webhook_endpoints.insert().values(
                    id=endpoint_id,
                    workspace_id=workspace_id,
                    url=url,
                    description=description,
                    events=list(events),
                    secret=self._seal(secret),
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        return await self.get(workspace_id, endpoint_id), secret

    async def of_workspace(self, workspace_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(*PUBLIC)
                .where(webhook_endpoints.c.workspace_id == workspace_id)
                .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
            )
            return [dict(r._mapping) for r in rows]

    async def get(self, workspace_id: str, endpoint_id: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(*PUBLIC).where(
                        webhook_endpoints.c.workspace_id == workspace_id,
                        webhook_endpoints.c.id == endpoint_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r} in this workspace")
        return dict(row._mapping)

    async def update(self, workspace_id: str, endpoint_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change any of url, events, description, enabled (already validated)."""
        allowed = {k: v for k, v in changes.items() if k in ("url", "events", "description", "enabled")}
        await self._update(workspace_id, endpoint_id, allowed)
        return await self.get(workspace_id, endpoint_id)

    async def rotate(self, workspace_id: str, endpoint_id: str) -> str:
        """A new secret (returned once); deliveries signed from now on use it."""
        secret = new_secret()
        await self._update(workspace_id, endpoint_id, {"secret": self._seal(secret)})
        return secret

    async def delete(self, workspace_id: str, endpoint_id: str) -> None:
        """The endpoint and its delivery log."""
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(
                    sa.select(webhook_endpoints.c.id).where(
                        webhook_endpoints.c.workspace_id == workspace_id,
                        webhook_endpoints.c.id == endpoint_id,
                    )
                )
            ).first()
            if found is None:
                raise NotFound(f"no webhook endpoint {endpoint_id!r} in this workspace")
            deliveries = sa.select(webhook_deliveries.c.id).where(
                webhook_deliveries.c.endpoint_id == endpoint_id
            )
            await conn.execute(
                webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(deliveries))
            )
            await conn.execute(
                webhook_deliveries.delete().where(webhook_deliveries.c.endpoint_id == endpoint_id)
            )
            await conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id))

    async def subscribed(self, workspace_id: str, event_type: str) -> list[Target]:
        """The enabled endpoints of a workspace that take this event type."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(webhook_endpoints).where(
                        webhook_endpoints.c.workspace_id == workspace_id,
                        webhook_endpoints.c.enabled == sa.true(),
                    )
                )
            ).all()
        return [self._target(r) for r in rows if event_type in (r.events or [])]

    async def target(self, endpoint_id: str) -> Target | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
            ).first()
        return None if row is None else self._target(row)

    async def _update(self, workspace_id: str, endpoint_id: str, values: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                webhook_endpoints.update()
                .where(
                    webhook_endpoints.c.workspace_id == workspace_id, webhook_endpoints.c.id == endpoint_id
                )
                .values(**values, updated_at=utcnow())
            )
        if result.rowcount == 0:
            raise NotFound(f"no webhook endpoint {endpoint_id!r} in this workspace")

    @functools.cached_property
    def fernet(self) -> Fernet:
        from cryptography.fernet import Fernet  # at first use: see credentials.checked_secret_key

        return Fernet(self.secret_key)

    def _seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode()

    def _target(self, row: Any) -> Target:
        from cryptography.fernet import InvalidToken

        try:
            secret = self.fernet.decrypt(row.secret.encode()).decode()
        except InvalidToken as exc:
            raise ValidationFailed(
                f"the secret of webhook endpoint {row.id} cannot be decrypted (the server secret changed); "
                "rotate it"
            ) from exc
        return Target(row.id, row.workspace_id, row.url, secret, bool(row.enabled))
