"""Provider credentials per workspace, encrypted at rest with Fernet.

The secret is decrypted only to call the upstream; no API answer and no log
line ever contains it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.change_events import ChangeFeed, ProviderSettingsChanged
from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.domain.upstream_urls import base_url_problem
from promptdeck.store.tables import provider_credentials

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


def load_secret_key(configured: str, data_dir: Path) -> bytes:
    """The server secret: PROMPTDECK_SECRET_KEY, else a key kept in the data directory
    (created on first use; every replica must share it, so set the variable in production)."""
    if configured:
        return checked_secret_key(configured.encode())
    path = data_dir / "secret-key"
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # if created here: the owner's only
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.urlsafe_b64encode(os.urandom(32)))  # as Fernet.generate_key()
    return checked_secret_key(path.read_bytes().strip())


def checked_secret_key(key: bytes) -> bytes:
    """The key, if Fernet takes it (32 url-safe base64 bytes), checked at startup as Fernet would:
    the stores build their Fernet at first use, so that cryptography (~7 MB, bench/README.md
    "Memory") stays out of a server that never stores or reads a secret."""
    try:
        if len(base64.urlsafe_b64decode(key)) == 32:
            return key
    except (binascii.Error, ValueError):
        pass
    raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")


@dataclass(frozen=True, slots=True)
class Credential:
    api_key: str
    base_url: str | None


class CredentialStore:
    """Each committed change publishes `ProviderSettingsChanged`: the engine caches credentials."""

    def __init__(self, engine: AsyncEngine, secret_key: bytes, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.secret_key = secret_key
        self.changes = changes or ChangeFeed()

    @functools.cached_property
    def fernet(self) -> Fernet:
        from cryptography.fernet import Fernet  # at first use: see checked_secret_key

        return Fernet(self.secret_key)

    async def put(
        self, workspace_id: str, provider: str, api_key: str, base_url: str | None
    ) -> dict[str, Any]:
        if not api_key:
            raise ValidationFailed("api_key: required, the provider's secret key")
        if base_url and (problem := base_url_problem(base_url)):
            raise ValidationFailed(problem)
        values = {
            "secret": self.fernet.encrypt(api_key.encode()).decode(),
            "base_url": base_url or None,
            "updated_at": utcnow(),
        }
        async with self.engine.begin() as conn:
            where = (provider_credentials.c.workspace_id == workspace_id) & (
                provider_credentials.c.provider == provider
            )
            result = await conn.execute(provider_credentials.update().where(where).values(**values))
            if result.rowcount == 0:
                await conn.execute(
                    provider_credentials.insert().values(
                        id=new_id(), workspace_id=workspace_id, provider=provider, **values
                    )
                )
        self.changes.publish(ProviderSettingsChanged(workspace_id))
        return {"provider": provider, "base_url": values["base_url"], "updated_at": values["updated_at"]}

    async def get(self, workspace_id: str, provider: str) -> Credential | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(provider_credentials).where(
                        provider_credentials.c.workspace_id == workspace_id,
                        provider_credentials.c.provider == provider,
                    )
                )
            ).first()
        if row is None:
            return None
        from cryptography.fernet import InvalidToken

        try:
            return Credential(self.fernet.decrypt(row.secret.encode()).decode(), row.base_url)
        except InvalidToken as exc:
            raise ValidationFailed(
                f"the stored {provider} credential cannot be decrypted (the server secret changed); "
                "store it again"
            ) from exc

    async def list(self, workspace_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(
                    provider_credentials.c.provider,
                    provider_credentials.c.base_url,
                    provider_credentials.c.updated_at,
                )
                .where(provider_credentials.c.workspace_id == workspace_id)
                .order_by(provider_credentials.c.provider)
            )
            return [
                {"provider": r.provider, "base_url": r.base_url, "updated_at": r.updated_at} for r in rows
            ]

    async def delete(self, workspace_id: str, provider: str) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                provider_credentials.delete().where(
                    provider_credentials.c.workspace_id == workspace_id,
                    provider_credentials.c.provider == provider,
                )
            )
        if result.rowcount == 0:
            raise NotFound(f"no stored credential for provider {provider!r}")
        self.changes.publish(ProviderSettingsChanged(workspace_id))
