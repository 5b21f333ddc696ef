"""Pointing a variant at a version: the one write behind every move, push, rollback, import and
`latest` follower, with the history row it appends."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from promptdeck.domain.deployments import Version
from promptdeck.domain.prompts import check_slug
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.catalog_facts import note_move
from promptdeck.store.tables import deployments, variant_moves, variants

FOLLOW_NOTE = "latest"  # the note of a move made because a new version was created


async def move(
    conn: AsyncConnection,
    deployment_id: str,
    variant: str,
    version_id: str,
    actor: str,
    note: str,
    follows_latest: bool | None = None,
) -> str | None:
    """Point a variant at a version (creating the variant if new); returns the previous version id.
    `follows_latest` sets or clears the variant's following of new versions (None: unchanged)."""
    check_slug(variant, "variant name")
    row = (
        await conn.execute(
            sa.select(variants).where(variants.c.deployment_id == deployment_id, variants.c.name == variant)
        )
    ).first()
    now = utcnow()
    if row is None:
        variant_id, previous = new_id(), None
        await conn.execute(
            variants.insert().values(
                id=variant_id,
                deployment_id=deployment_id,
                name=variant,
                version_id=version_id,
                updated_at=now,
                config=None,
                follows_latest=bool(follows_latest),
            )
        )
    else:
        variant_id, previous = str(row.id), str(row.version_id)
        if follows_latest is not None and bool(row.follows_latest) != follows_latest:
            await conn.execute(
                variants.update().where(variants.c.id == variant_id).values(follows_latest=follows_latest)
            )
        if previous == version_id:
            return previous
        await conn.execute(
            variants.update().where(variants.c.id == variant_id).values(version_id=version_id, updated_at=now)
        )
    await conn.execute(
        variant_moves.insert().values(
            id=new_id(),
            variant_id=variant_id,
            from_version_id=previous,
            to_version_id=version_id,
            actor=actor,
            note=note,
            created_at=now,
        )
    )
    await note_move(conn, deployment_id, variant, previous, version_id, actor, note)
    return previous


async def move_followers(
    conn: AsyncConnection, prompt: Any, version: Version, actor: str
) -> list[tuple[str, str, str | None]]:
    """Point every variant that follows `latest` (of any deployment of this prompt) at `version`;
    returns (deployment name, variant, previous version id) of each, so a push can say so."""
    rows = await conn.execute(
        sa.select(variants.c.deployment_id, variants.c.name, deployments.c.name.label("deployment"))
        .join(deployments, deployments.c.id == variants.c.deployment_id)
        .where(deployments.c.prompt_id == prompt.id, variants.c.follows_latest == sa.true())
        .order_by(deployments.c.name, variants.c.name)
    )
    moved = []
    for row in rows.all():
        previous = await move(conn, row.deployment_id, row.name, version.id, actor, FOLLOW_NOTE)
        moved.append((row.deployment, row.name, previous))
    return moved
