"""What the console shows about prompts at a glance: each prompt's newest version (number,
model, time) and the deployment variants pointing at its versions.

Two or three indexed queries per page whatever the number of runs: nothing here reads the
run log.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.store.tables import deployments, prompt_versions, prompts, variants


@dataclass(frozen=True, slots=True)
class VariantPointer:
    """One deployment variant that serves a version (`summarize` / `production`)."""

    deployment: str
    variant: str
    version_number: int
    is_default: bool
    follows_latest: bool


@dataclass(frozen=True, slots=True)
class PromptSummary:
    slug: str
    name: str
    description: str
    created_at: datetime
    latest_version: int | None
    model: str | None
    changed_at: datetime  # the newest version's time, else the prompt's own
    changed_by: str
    deployments: tuple[str, ...] = field(default=())


class PromptOverview:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def prompts(self, workspace_id: str) -> list[PromptSummary]:
        """Every prompt of the workspace with its newest version and its deployments, by slug."""
        newest = (
            sa.select(prompt_versions.c.prompt_id, sa.func.max(prompt_versions.c.number).label("number"))
            .group_by(prompt_versions.c.prompt_id)
            .subquery()
        )
        query = (
            sa.select(
                prompts.c.id,
                prompts.c.slug,
                prompts.c.name,
                prompts.c.description,
                prompts.c.created_at,
                prompt_versions.c.number,
                prompt_versions.c.model,
                prompt_versions.c.created_at.label("version_created_at"),
                prompt_versions.c.author,
            )
            .outerjoin(newest, newest.c.prompt_id == prompts.c.id)
            .outerjoin(
                prompt_versions,
                sa.and_(
                    prompt_versions.c.prompt_id == prompts.c.id, prompt_versions.c.number == newest.c.number
                ),
            )
            .where(prompts.c.workspace_id == workspace_id)
            .order_by(prompts.c.slug)
        )
        served = (
            sa.select(deployments.c.prompt_id, deployments.c.name)
            .where(deployments.c.workspace_id == workspace_id)
            .order_by(deployments.c.name)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            by_prompt: dict[str, list[str]] = defaultdict(list)
            for row in await conn.execute(served):
                by_prompt[row.prompt_id].append(row.name)
        return [
            PromptSummary(
                slug=r.slug,
                name=r.name,
                description=r.description,
                created_at=r.created_at,
                latest_version=r.number,
                model=r.model,
                changed_at=r.version_created_at or r.created_at,
                changed_by=r.author or "",
                deployments=tuple(by_prompt.get(r.id, ())),
            )
            for r in rows
        ]

    async def pointers(self, workspace_id: str, slug: str) -> list[VariantPointer]:
        """The variants of every deployment of this prompt, with the version each points at
        (none for an unknown prompt: callers look the prompt up first)."""
        query = (
            sa.select(
                deployments.c.name.label("deployment"),
                deployments.c.default_variant,
                variants.c.name.label("variant"),
                variants.c.follows_latest,
                prompt_versions.c.number,
            )
            .select_from(prompts)
            .join(deployments, deployments.c.prompt_id == prompts.c.id)
            .join(variants, variants.c.deployment_id == deployments.c.id)
            .join(prompt_versions, prompt_versions.c.id == variants.c.version_id)
            .where(prompts.c.workspace_id == workspace_id, prompts.c.slug == slug)
            .order_by(deployments.c.name, variants.c.name)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            VariantPointer(
                deployment=r.deployment,
                variant=r.variant,
                version_number=r.number,
                is_default=r.variant == r.default_variant,
                follows_latest=bool(r.follows_latest),
            )
            for r in rows
        ]


def pointers_by_version(pointers: list[VariantPointer]) -> dict[int, list[VariantPointer]]:
    grouped: dict[int, list[VariantPointer]] = defaultdict(list)
    for pointer in pointers:
        grouped[pointer.version_number].append(pointer)
    return dict(grouped)
