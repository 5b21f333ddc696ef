"""The audit log: who changed what, from where, when, and the values before and after.

Every admin action records one event (docs/governance.md, "Audit log"): keys, credentials,
members, workspaces, limits, budgets, retention and variant moves. A secret is never recorded:
values under a secret's name are replaced before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.tables import audit_events

REDACTED = "[redacted]"
# Names whose values are secrets, wherever they appear in a before or after value.
SECRET_NAMES = frozenset(
    {"api_key", "secret", "password", "password_hash", "key_hash", "token", "signing_secret", "authorization"}
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a member's email or a key's name, the key used, and where the call came from."""

    name: str
    key_id: str | None = None
    address: str = ""
    user_agent: str = ""


def redacted(value: Any) -> Any:
    """`value` with every secret-named field's value replaced, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SECRET_NAMES else redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


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
            await conn.execute(
                audit_events.insert().values(
                    id=new_id(),
                    workspace_id=workspace_id,
                    created_at=utcnow(),
                    actor=actor.name[:320],
                    actor_key_id=actor.key_id,
                    address=actor.address[:64],
                    user_agent=actor.user_agent[:300],
                    action=action,
                    target_type=target_type,
                    target_id=target_id[:320],
                    before=redacted(before),
                    after=redacted(after),
                )
            )
