"""API-key checks for every surface, served from memory in the steady state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from promptdeck.domain import keys
from promptdeck.domain.errors import Forbidden, Unauthorized
from promptdeck.domain.runs import utcnow
from promptdeck.engine.ttl_cache import MISSING, TtlCache
from promptdeck.store.access import AccessStore, ApiKey

INVALID = "Invalid access."


@dataclass(frozen=True, slots=True)
class Caller:
    """An API key, or a console member signed in with a session cookie (`member_email` set,
    `key_id` None). `actor` is who a change is recorded as: the member's email or the key's name."""

    key_id: str | None
    workspace_id: str
    scopes: tuple[str, ...]
    key_name: str
    member_email: str | None = None
    role: str | None = None
    deployments: tuple[str, ...] | None = None  # the deployments an invoke key may call; None: every one
    instance_admin: bool = False  # may manage workspaces (docs/governance.md)

    @property
    def actor(self) -> str:
        return self.member_email or self.key_name

    @classmethod
    def member(cls, workspace_id: str, email: str, role: str, *, instance_admin: bool = False) -> Caller:
        """A console member: owners hold the `admin` scope, editors and viewers `read` (the admin
        gate checks their role per route)."""
        scopes = ("admin",) if role == "owner" else ("invoke", "read")
        return cls(
            None, workspace_id, scopes, email, member_email=email, role=role, instance_admin=instance_admin
        )

    def may_call(self, deployment: str) -> bool:
        """Whether this caller's key may call `deployment` (an invoke key may be narrowed to a list)."""
        return self.deployments is None or deployment in self.deployments


class KeyCheck:
    """Turns a presented secret into a `Caller`. A secret that cannot be a promptdeck key is
    refused at once, with no look-up and nothing cached; unknown and revoked keys are cached
    too (in the cache's smaller store for misses), so repeating a bad key does not reach the
    database and a flood of them cannot grow memory or evict the real keys."""

    def __init__(
        self,
        store: AccessStore,
        ttl_seconds: float,
        *,
        max_entries: int = TtlCache.MAX_ENTRIES,
        max_misses: int = TtlCache.MAX_MISSES,
    ) -> None:
        self.store = store
        self._cache: TtlCache[str, ApiKey | None] = TtlCache(
            store.find_by_hash, ttl_seconds, max_entries=max_entries, max_misses=max_misses
        )
        self.last_used: dict[str, datetime] = {}

    async def caller(self, secret: str | None, scope: str) -> Caller:
        if not secret or not keys.could_be_key(secret):
            raise Unauthorized(INVALID)
        hashed = keys.hash_key(secret)
        key = self._cache.cached(hashed)
        if key is MISSING:
            key = await self._cache.get(hashed)
        if key is None or key.revoked_at is not None:
            raise Unauthorized(INVALID)
        refused = unusable(key, utcnow())
        if refused:
            raise Unauthorized(refused)
        if not keys.allows(key.scopes, scope):
            needed = f"{scope!r} or 'admin'" if scope != "admin" else "'admin'"
            raise Forbidden(
                f"this needs an API key with the {needed} scope; this key has {', '.join(key.scopes)}"
            )
        self.last_used[key.id] = utcnow()
        return Caller(
            key.id,
            key.workspace_id,
            key.scopes,
            key.name,
            deployments=key.deployments,
            instance_admin=key.instance_admin,
        )

    def forget(self) -> None:
        """Drop every cached key (on `AccessChanged`: a key created, revoked or rotated, or a
        workspace archived or restored)."""
        self._cache.invalidate()

    def take_last_used(self) -> dict[str, datetime]:
        used, self.last_used = self.last_used, {}
        return used


def unusable(key: ApiKey, now: datetime) -> str | None:
    """Why a known, unrevoked key is refused now, told so a person can act on it; None when it may
    be used. Checked at every use against the clock, so a cached key expires on time."""
    if key.workspace_archived_at is not None:
        return "this API key's workspace is archived; an instance administrator can restore it"
    if key.expires_at is not None and key.expires_at <= now:
        return (
            f"this API key ({key.prefix}…) expired at {key.expires_at.isoformat(timespec='seconds')}; "
            "ask a workspace admin for a new key"
        )
    return None


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
