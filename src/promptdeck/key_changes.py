"""Creating, revoking and rotating an API key, each recorded in the audit log (never the
secret): the admin API (surfaces/admin_keys.py) and the console's Settings page (web/) make the
same changes, and neither may import the other, so they live here once."""

from __future__ import annotations

from fastapi import Request

from promptdeck.admin_models import KeyIn, KeyRotateIn
from promptdeck.audit_trail import audit
from promptdeck.engine.auth import Caller
from promptdeck.services import Services
from promptdeck.store.access import ApiKey


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def create_key(request: Request, caller: Caller, body: KeyIn) -> tuple[ApiKey, str]:
    """The new key and its secret, shown this once."""
    key, secret = await _services(request).access.create_key(
        caller.workspace_id, body.name, body.scopes, deployments=body.deployments, expires_at=body.expiry()
    )
    await audit(request, caller, "key.created", "key", key.id, after=key.to_dict())
    return key, secret


async def revoke_key(request: Request, caller: Caller, key_id: str) -> ApiKey:
    """Refused from now on, on every replica (the store publishes `AccessChanged`)."""
    access = _services(request).access
    before = await access.get_key(caller.workspace_id, key_id)
    key = await access.revoke_key(caller.workspace_id, key_id)
    await audit(request, caller, "key.revoked", "key", key.id, before.to_dict(), key.to_dict())
    return key


async def rotate_key(
    request: Request, caller: Caller, key_id: str, body: KeyRotateIn
) -> tuple[ApiKey, ApiKey, str]:
    """(The old key with its new expiry, the new key, the new key's secret shown this once.)"""
    access = _services(request).access
    before = await access.get_key(caller.workspace_id, key_id)
    old, new, secret = await access.rotate_key(
        caller.workspace_id, key_id, body.old_expiry(), expires_at=body.expiry()
    )
    after = {"old": old.to_dict(), "new": new.to_dict()}
    await audit(request, caller, "key.rotated", "key", key_id, before.to_dict(), after)
    return old, new, secret
