"""Prompts and their immutable versions.

The row-level helpers (`prompt_row`, `insert_version`, …) take an open connection so that the
deployment store, prompt sync and workspace import can do their work in one transaction with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.change_events import CatalogChanged, ChangeFeed
from promptdeck.domain.content_parts import content_from_data
from promptdeck.domain.deployments import Version
from promptdeck.domain.errors import Conflict, NotFound, ValidationFailed
from promptdeck.domain.prompts import (
    UNDECLARED_VARIABLES,
    InputSpec,
    Message,
    PromptSpec,
    check_slug,
    parse_spec,
)
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.domain.templating import DEFAULT_SYNTAX
from promptdeck.store.catalog_facts import note_version, recording
from promptdeck.store.tables import prompt_versions, prompts
from promptdeck.store.variant_moves import Release, move_followers

PROMPT_CHANGES = frozenset({"name", "description", "undeclared_variables"})


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt's own fields; `latest_version` is its newest version's number (None: no version)."""

    id: str
    slug: str
    name: str
    description: str
    undeclared_variables: str
    created_at: datetime
    latest_version: int | None = None


class PromptStore:
    def __init__(self, engine: AsyncEngine, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.changes = changes or ChangeFeed()

    async def create_prompt(
        self,
        workspace_id: str,
        slug: str,
        name: str = "",
        description: str = "",
        undeclared_variables: str = "declare",
    ) -> Prompt:
        """A new prompt has no version, so nothing the engine caches changes: no event."""
        check_slug(slug, "prompt slug")
        check_undeclared_variables(undeclared_variables)
        try:
            async with self.engine.begin() as conn:
                if await prompt_row(conn, workspace_id, slug) is not None:
                    raise Conflict(f"a prompt with slug {slug!r} already exists")
                await insert_prompt(conn, workspace_id, slug, name, description, undeclared_variables)
                return prompt_from_row(await require_prompt(conn, workspace_id, slug))
        except IntegrityError as exc:  # created by a concurrent request between check and insert
            raise Conflict(f"a prompt with slug {slug!r} already exists") from exc

    async def update_prompt(self, workspace_id: str, slug: str, changes: dict[str, Any]) -> Prompt:
        """Change a prompt's name, description or `undeclared_variables` setting (versions stay;
        the deployments the engine caches hold versions only, so no event)."""
        unknown = sorted(set(changes) - PROMPT_CHANGES)
        if unknown:
            raise ValidationFailed(f"cannot change {', '.join(unknown)} of a prompt")
        if "undeclared_variables" in changes:
            check_undeclared_variables(changes["undeclared_variables"])
        for key in ("name", "description"):
            if key in changes and not isinstance(changes[key], str):
                raise ValidationFailed(f"{key}: expected a string")
        async with self.engine.begin() as conn:
            row = await require_prompt(conn, workspace_id, slug)
            if changes:
                await conn.execute(prompts.update().where(prompts.c.id == row.id).values(**changes))
        return await self.get_prompt(workspace_id, slug)

    async def list_prompts(self, workspace_id: str) -> list[Prompt]:
        latest = (
            sa.select(prompt_versions.c.prompt_id, sa.func.max(prompt_versions.c.number).label("latest"))
            .group_by(prompt_versions.c.prompt_id)
            .subquery()
        )
        query = (
            sa.select(prompts, latest.c.latest)
            .outerjoin(latest, latest.c.prompt_id == prompts.c.id)
            .where(prompts.c.workspace_id == workspace_id)
            .order_by(prompts.c.slug)
        )
        async with self.engine.connect() as conn:
            return [prompt_from_row(r, r.latest) for r in await conn.execute(query)]

    async def get_prompt(self, workspace_id: str, slug: str) -> Prompt:
        async with self.engine.connect() as conn:
            row = await require_prompt(conn, workspace_id, slug)
            latest = await latest_version(conn, row)
        return prompt_from_row(row, latest.number if latest else None)

    async def create_version(
        self,
        workspace_id: str,
        slug: str,
        raw_spec: Any,
        note: str = "",
        author: str = "",
        release: Release | None = None,
    ) -> Version:
        """Save a version; the variants that follow `latest` move to it (in the same transaction)
        if the release check lets them: a refused follower stays where it is (`release.held`)."""
        parse_spec(raw_spec)  # the version's own problems first, before looking the prompt up
        with recording() as facts:
            async with self.engine.begin() as conn:
                prompt = await require_prompt(conn, workspace_id, slug)
                spec = parse_spec(raw_spec, prompt.undeclared_variables)
                version = await insert_version(conn, prompt, spec, note, author)
                await move_followers(conn, prompt, version, author, release)
        self.changes.publish(CatalogChanged(workspace_id, tuple(facts)))  # `latest` and its followers moved
        return version

    async def list_versions(self, workspace_id: str, slug: str) -> list[Version]:
        async with self.engine.connect() as conn:
            prompt = await require_prompt(conn, workspace_id, slug)
            rows = await conn.execute(
                sa.select(prompt_versions)
                .where(prompt_versions.c.prompt_id == prompt.id)
                .order_by(prompt_versions.c.number)
            )
            return [version_from_row(r, slug) for r in rows]

    async def get_version(self, workspace_id: str, slug: str, number: int) -> Version:
        async with self.engine.connect() as conn:
            prompt = await require_prompt(conn, workspace_id, slug)
            return await version_by_number(conn, prompt, number)


def check_undeclared_variables(value: Any) -> str:
    if value not in UNDECLARED_VARIABLES:
        raise ValidationFailed(
            f"undeclared_variables: expected one of {', '.join(UNDECLARED_VARIABLES)}; got {value!r}"
        )
    return str(value)


def prompt_from_row(row: Any, latest_version: int | None = None) -> Prompt:
    return Prompt(
        id=row.id,
        slug=row.slug,
        name=row.name,
        description=row.description,
        undeclared_variables=row.undeclared_variables or "declare",
        created_at=row.created_at,
        latest_version=latest_version,
    )


def spec_from_row(row: Any) -> PromptSpec:
    return PromptSpec(
        model=row.model,
        messages=tuple(Message(m["role"], content_from_data(m["content"])) for m in row.messages),
        params=dict(row.params),
        inputs={name: InputSpec(**decl) for name, decl in row.inputs.items()},
        tools=row.tools,
        tool_choice=row.tool_choice,
        response_format=row.response_format,
        template_syntax=row.template_syntax or DEFAULT_SYNTAX,
        extra_inputs=row.extra_inputs or "allow",
    )


def version_from_row(row: Any, slug: str) -> Version:
    return Version(
        id=row.id,
        prompt_id=row.prompt_id,
        prompt_slug=slug,
        number=row.number,
        spec=spec_from_row(row),
        note=row.note,
        author=row.author,
        created_at=row.created_at,
    )


async def prompt_row(conn: AsyncConnection, workspace_id: str, slug: str) -> Any:
    return (
        await conn.execute(
            sa.select(prompts).where(prompts.c.workspace_id == workspace_id, prompts.c.slug == slug)
        )
    ).first()


async def require_prompt(conn: AsyncConnection, workspace_id: str, slug: str) -> Any:
    row = await prompt_row(conn, workspace_id, slug)
    if row is None:
        raise NotFound(f"no prompt {slug!r} in this workspace")
    return row


async def prompt_by_id(conn: AsyncConnection, prompt_id: str) -> Any:
    return (await conn.execute(sa.select(prompts).where(prompts.c.id == prompt_id))).one()


async def insert_prompt(
    conn: AsyncConnection,
    workspace_id: str,
    slug: str,
    name: str,
    description: str,
    undeclared_variables: str = "declare",
) -> str:
    """Insert a prompt row; returns its id."""
    prompt_id = new_id()
    await conn.execute(
        prompts.insert().values(
            id=prompt_id,
            workspace_id=workspace_id,
            slug=slug,
            name=name or slug,
            description=description,
            created_at=utcnow(),
            undeclared_variables=undeclared_variables,
        )
    )
    return prompt_id


async def insert_version(
    conn: AsyncConnection, prompt: Any, spec: PromptSpec, note: str, author: str
) -> Version:
    number = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(prompt_versions.c.number), 0)).where(
                prompt_versions.c.prompt_id == prompt.id
            )
        )
    ).scalar_one() + 1
    data = spec.to_dict()
    values = {
        "id": new_id(),
        "prompt_id": prompt.id,
        "number": number,
        "model": data["model"],
        "messages": data["messages"],
        "params": data["params"],
        "inputs": data["inputs"],
        "tools": spec.tools,
        "tool_choice": spec.tool_choice,
        "response_format": spec.response_format,
        "template_syntax": data.get("template_syntax"),
        "extra_inputs": data.get("extra_inputs"),
        "content_hash": spec.content_hash,
        "note": note,
        "author": author,
        "created_at": utcnow(),
    }
    try:
        await conn.execute(prompt_versions.insert().values(**values))
    except IntegrityError as exc:
        raise Conflict("another version was created at the same moment; try again") from exc
    version = Version(values["id"], prompt.id, prompt.slug, number, spec, note, author, values["created_at"])
    note_version(version)
    return version


async def version_by_number(conn: AsyncConnection, prompt: Any, number: int) -> Version:
    """Every lookup by number passes here (API, console, prompt files, imports): a number
    the column cannot hold is not found, never passed on to overflow the driver."""
    if not 1 <= number <= VERSION_NUMBER_MAX:
        raise NotFound(
            f"prompt {prompt.slug!r} has no version {number}: version numbers run from 1 to "
            f"{VERSION_NUMBER_MAX}"
        )
    row = (
        await conn.execute(
            sa.select(prompt_versions).where(
                prompt_versions.c.prompt_id == prompt.id, prompt_versions.c.number == number
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"prompt {prompt.slug!r} has no version {number}")
    return version_from_row(row, prompt.slug)


async def latest_version(conn: AsyncConnection, prompt: Any) -> Version | None:
    row = (
        await conn.execute(
            sa.select(prompt_versions)
            .where(prompt_versions.c.prompt_id == prompt.id)
            .order_by(prompt_versions.c.number.desc())
            .limit(1)
        )
    ).first()
    return version_from_row(row, prompt.slug) if row else None
