"""The facts a catalog write records as it goes, published with its `CatalogChanged` once committed.

The primitive writes every write path shares (`insert_version`, `insert_deployment`, `move`) note
a fact each; a store method collects them with `recording()` around its transaction. So a new
write path built from the primitives tells webhooks what it did without remembering to. Outside
`recording()` nothing is noted and no lookup is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from promptdeck.domain.change_events import (
    DeploymentCreated,
    Fact,
    VariantMoved,
    VersionCreated,
)
from promptdeck.domain.deployments import Version
from promptdeck.store.tables import deployments, prompt_versions, prompts

_recording: ContextVar[list[Fact] | None] = ContextVar("catalog_facts", default=None)


@contextmanager
def recording() -> Iterator[list[Fact]]:
    """Collect the facts noted inside; the list is complete once the block ends (publish it only
    after the transaction committed)."""
    facts: list[Fact] = []
    token = _recording.set(facts)
    try:
        yield facts
    finally:
        _recording.reset(token)


def is_recording() -> bool:
    return _recording.get() is not None


def note(fact: Fact) -> None:
    facts = _recording.get()
    if facts is not None:
        facts.append(fact)


def note_version(version: Version) -> None:
    spec = version.spec
    note(VersionCreated(version.prompt_slug, version.number, spec.model, version.author, version.note))


async def note_deployment(conn: AsyncConnection, name: str, prompt_id: str, default_variant: str) -> None:
    if not is_recording():
        return
    slug = (await conn.execute(sa.select(prompts.c.slug).where(prompts.c.id == prompt_id))).scalar_one()
    note(DeploymentCreated(name, slug, default_variant))


async def note_move(
    conn: AsyncConnection,
    deployment_id: str,
    variant: str,
    from_version_id: str | None,
    to_version_id: str,
    actor: str,
    note_text: str,
) -> None:
    if not is_recording():
        return
    names = (
        await conn.execute(
            sa.select(deployments.c.name, prompts.c.slug)
            .join(prompts, prompts.c.id == deployments.c.prompt_id)
            .where(deployments.c.id == deployment_id)
        )
    ).one()
    ids = [i for i in (from_version_id, to_version_id) if i is not None]
    query = sa.select(prompt_versions.c.id, prompt_versions.c.number).where(prompt_versions.c.id.in_(ids))
    numbers: dict[str, int] = {str(i): int(n) for i, n in await conn.execute(query)}
    note(
        VariantMoved(
            names.name,
            variant,
            names.slug,
            numbers.get(from_version_id) if from_version_id is not None else None,
            numbers[to_version_id],
            actor,
            note_text,
        )
    )
