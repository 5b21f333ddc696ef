"""Prompts as code: applying prompt files (`promptdeck push`, `POST /api/push`).

A push creates the prompt if new, adds a version only if the content changed and moves the
variants the file names, all in one transaction; a batch is all files or none. What `pull`
writes back is `workspace_archive.pull_documents`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.change_events import CatalogChanged, ChangeFeed
from promptdeck.domain.deployments import LATEST, Version
from promptdeck.domain.errors import Conflict, PromptdeckError
from promptdeck.domain.promptfile import check_document
from promptdeck.domain.prompts import check_slug, parse_spec
from promptdeck.store.catalog_facts import recording
from promptdeck.store.deployments import deployment_row, insert_deployment, target_version
from promptdeck.store.prompts import (
    check_undeclared_variables,
    insert_prompt,
    insert_version,
    latest_version,
    prompt_row,
    require_prompt,
)
from promptdeck.store.tables import prompt_versions, prompts
from promptdeck.store.variant_moves import move, move_followers

# Refuses (raises `ValidationFailed`) a model id this server cannot call; the server passes
# `providers.registry.check_model` over its providers, so a push is checked as a save is.
ModelCheck = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class PushedMove:
    """A variant a prompt file names, or one that follows `latest` and so moves with a new
    version (`follows_latest`), and whether the push moved it."""

    deployment: str
    variant: str
    version: int
    changed: bool
    from_version: int | None
    follows_latest: bool = False


@dataclass
class PushReport:
    """What a push changed; `changed` is False when the file matched the server exactly."""

    prompt: str
    prompt_created: bool = False
    version: int = 0
    version_created: bool = False
    moves: list[PushedMove] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.prompt_created or self.version_created or any(m.changed for m in self.moves)


class PromptSync:
    def __init__(self, engine: AsyncEngine, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.changes = changes or ChangeFeed()

    async def push(
        self,
        workspace_id: str,
        document: dict[str, Any],
        actor: str = "",
        *,
        force: bool = False,
        dry_run: bool = False,
        check_model: ModelCheck | None = None,
    ) -> PushReport:
        """Apply one prompt file: create the prompt if new, add a version only if the content
        changed, and move the named variants. Idempotent; all or nothing. See `push_many`."""
        pushed = await self.push_many(
            workspace_id, [document], actor, force=force, dry_run=dry_run, check_model=check_model
        )
        return pushed[0]

    async def push_many(
        self,
        workspace_id: str,
        documents: list[dict[str, Any]],
        actor: str = "",
        *,
        force: bool = False,
        dry_run: bool = False,
        names: list[str] | None = None,
        check_model: ModelCheck | None = None,
    ) -> list[PushReport]:
        """Apply prompt files in order, in one transaction: all of them or none.

        A file that records the `version` it was pulled from is refused (`Conflict`) when the
        prompt has a newer version and the file would publish another on top of it, unless
        `force`. With `dry_run` the same work is done and rolled back: the reports are the plan.
        `check_model` refuses a model the server cannot call, before anything is written."""
        for index, document in enumerate(documents):
            with _naming(names, index):
                check_document(document)
                if check_model is not None:
                    check_model(document["model"])
        reports: list[PushReport] = []
        with recording() as facts:
            async with self.engine.connect() as conn:
                transaction = await conn.begin()
                try:
                    for index, document in enumerate(documents):
                        with _naming(names, index):
                            reports.append(await self._apply(conn, workspace_id, document, actor, force))
                except BaseException:
                    await transaction.rollback()
                    raise
                if dry_run:
                    await transaction.rollback()
                else:
                    await transaction.commit()
        if not dry_run and any(r.changed for r in reports):
            self.changes.publish(CatalogChanged(workspace_id, tuple(facts)))
        return reports

    async def _apply(
        self, conn: AsyncConnection, workspace_id: str, document: dict[str, Any], actor: str, force: bool
    ) -> PushReport:
        slug, spec, deploy = document["prompt"], parse_spec(document), document.get("deploy") or {}
        report = PushReport(prompt=slug)
        prompt = await prompt_row(conn, workspace_id, slug)
        if prompt is None:
            await insert_prompt(
                conn,
                workspace_id,
                slug,
                str(document.get("name") or ""),
                str(document.get("description") or ""),
            )
            prompt = await require_prompt(conn, workspace_id, slug)
            report.prompt_created = True
        if await _undeclared_mode(conn, prompt, document) == "refuse":
            spec = parse_spec(document, "refuse")
        latest = await latest_version(conn, prompt)
        if latest is None or latest.spec.content_hash != spec.content_hash:
            based_on = document.get("version")
            if latest is not None and isinstance(based_on, int) and based_on < latest.number and not force:
                raise Conflict(
                    f"prompt {slug!r} has version {latest.number} on the server, newer than the version "
                    f"{based_on} this file was pulled from: pull it again and merge, or push with --force",
                    details={"prompt": slug, "file_version": based_on, "server_version": latest.number},
                )
            latest = await insert_version(conn, prompt, spec, str(document.get("note") or ""), actor)
            report.version_created = True
        report.version = latest.number
        for deployment_name, variant_targets in deploy.items():
            check_slug(deployment_name, "deployment name")
            row = await deployment_row(conn, workspace_id, deployment_name)
            if row is None:
                deployment_id = await insert_deployment(
                    conn, workspace_id, deployment_name, prompt.id, next(iter(variant_targets))
                )
            elif row.prompt_id != prompt.id:
                raise Conflict(f"deployment {deployment_name!r} already serves another prompt")
            else:
                deployment_id = row.id
            for variant, target in variant_targets.items():
                version = await target_version(conn, prompt, target)
                previous = await move(
                    conn, deployment_id, variant, version.id, actor, "push", target == LATEST
                )
                report.moves.append(await _pushed(conn, deployment_name, variant, version, previous))
        if report.version_created:  # after the file's own moves, so they are reported as its own
            named = {(m.deployment, m.variant) for m in report.moves}
            for deployment_name, variant, previous in await move_followers(conn, prompt, latest, actor):
                if (deployment_name, variant) not in named:
                    moved = await _pushed(conn, deployment_name, variant, latest, previous, follows=True)
                    report.moves.append(moved)
        return report


async def _undeclared_mode(conn: AsyncConnection, prompt: Any, document: dict[str, Any]) -> str:
    """A pushed file's `undeclared_variables` (stored on the prompt), else the prompt's own."""
    wanted = document.get("undeclared_variables")
    if wanted is not None and wanted != prompt.undeclared_variables:
        check_undeclared_variables(wanted)
        await conn.execute(
            prompts.update().where(prompts.c.id == prompt.id).values(undeclared_variables=wanted)
        )
        return str(wanted)
    return str(prompt.undeclared_variables or "declare")


async def _pushed(
    conn: AsyncConnection,
    deployment: str,
    variant: str,
    version: Version,
    previous: str | None,
    *,
    follows: bool = False,
) -> PushedMove:
    """What a push did to one variant, which pointed at `previous` (a version id) before."""
    changed = previous != version.id
    from_version = await _number_of(conn, previous)
    return PushedMove(deployment, variant, version.number, changed, from_version, follows_latest=follows)


async def _number_of(conn: AsyncConnection, version_id: str | None) -> int | None:
    if version_id is None:
        return None
    found = await conn.execute(sa.select(prompt_versions.c.number).where(prompt_versions.c.id == version_id))
    return found.scalar_one_or_none()


@contextmanager
def _naming(names: list[str] | None, index: int) -> Iterator[None]:
    """With several documents, an error says which one it is about (the file's name if given)."""
    if names is None:
        yield
        return
    try:
        yield
    except PromptdeckError as exc:
        exc.message = f"{names[index]}: {exc.message}"
        exc.args = (exc.message,)
        raise
