"""Prompts as code: applying prompt files (`promptdeck push`, `POST /api/push`).

A push creates the prompt if new, adds a version only if the content changed and moves the
variants the file names, all in one transaction; a batch is all files or none. Every move passes
the release check (docs/releases.md): one it refuses fails the whole push unless forced with a
reason. What `pull` writes back is `workspace_archive.pull_documents`.
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
from promptdeck.store.dataset_sync import SECTION as DATASETS
from promptdeck.store.dataset_sync import push_section
from promptdeck.store.deployments import deployment_row, insert_deployment, target_version
from promptdeck.store.prompts import (
    check_undeclared_variables,
    insert_prompt,
    insert_version,
    latest_version,
    prompt_by_id,
    prompt_row,
    require_prompt,
)
from promptdeck.store.tables import prompt_versions, prompts, variants
from promptdeck.store.variant_moves import Checked, Release, move_followers, release_move

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
    check: dict[str, Any] | None = None  # the release check's report (None: nothing to check)


@dataclass
class PushReport:
    """What a push changed; `changed` is False when the file matched the server exactly."""

    prompt: str
    prompt_created: bool = False
    version: int = 0
    version_created: bool = False
    moves: list[PushedMove] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)  # the file's datasets this push changed

    @property
    def changed(self) -> bool:
        moved = any(m.changed for m in self.moves)
        return self.prompt_created or self.version_created or moved or bool(self.datasets)


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
        release: Release | None = None,
    ) -> PushReport:
        """Apply one prompt file: create the prompt if new, add a version only if the content
        changed, and move the named variants. Idempotent; all or nothing. See `push_many`."""
        pushed = await self.push_many(
            workspace_id,
            [document],
            actor,
            force=force,
            dry_run=dry_run,
            check_model=check_model,
            release=release,
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
        release: Release | None = None,
        save_only: bool = False,
        just_saved: frozenset[str] = frozenset(),
    ) -> list[PushReport]:
        """Apply prompt files in order, in one transaction: all of them or none.

        A file that records the `version` it was pulled from is refused (`Conflict`) when the
        prompt has a newer version and the file would publish another on top of it, unless
        `force`. With `dry_run` the same work is done and rolled back: the reports are the plan,
        each move with the release check's report (a refused move is reported, not raised).
        `check_model` refuses a model the server cannot call, before anything is written.

        `release` carries the force, its reason and the gates' failures the engine found; with
        `save_only` only prompts and versions are written (nothing moves), and `just_saved` names
        the prompts whose version such a save step created, so their moves are made as if this
        push had created it (the engine's two steps when a gate must judge a new version)."""
        release = release if release is not None else Release(force=force)
        if dry_run:
            release.on_refusal = "report"
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
                            step = Step(release, save_only, document["prompt"] in just_saved)
                            reports.append(
                                await self._apply(conn, workspace_id, document, actor, force, step)
                            )
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
        self,
        conn: AsyncConnection,
        workspace_id: str,
        document: dict[str, Any],
        actor: str,
        force: bool,
        step: Step,
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
        report.datasets = await push_section(conn, workspace_id, prompt.id, document.get(DATASETS))
        if step.save_only:
            return report
        report.version_created = report.version_created or step.just_saved  # by this push's save step
        created = report.version_created
        for deployment_name, variant_targets in deploy.items():
            row = await _deployment_for(conn, workspace_id, deployment_name, prompt, variant_targets)
            for variant, target in variant_targets.items():
                report.moves.append(
                    await _push_move(conn, workspace_id, row, variant, target, latest, created, actor, step)
                )
        if created:  # after the file's own moves, so they are reported as its own
            named = {(m.deployment, m.variant) for m in report.moves}
            for deployment_name, variant, checked in await move_followers(
                conn, prompt, latest, actor, step.release
            ):
                if (deployment_name, variant) not in named:
                    moved = await _pushed(conn, deployment_name, variant, latest, checked, follows=True)
                    report.moves.append(moved)
        return report


@dataclass(frozen=True, slots=True)
class Step:
    """How one push applies a file: its release, and the engine's two steps (see `push_many`)."""

    release: Release
    save_only: bool = False
    just_saved: bool = False


async def _deployment_for(
    conn: AsyncConnection, workspace_id: str, name: str, prompt: Any, variant_targets: dict[str, Any]
) -> Any:
    """The row of a deployment a file names, created (serving the file's prompt) if new."""
    check_slug(name, "deployment name")
    row = await deployment_row(conn, workspace_id, name)
    if row is None:
        await insert_deployment(conn, workspace_id, name, prompt.id, next(iter(variant_targets)))
        return await deployment_row(conn, workspace_id, name)
    if row.prompt_id != prompt.id:
        raise Conflict(f"deployment {name!r} already serves another prompt")
    return row


async def _push_move(
    conn: AsyncConnection,
    workspace_id: str,
    deployment: Any,
    variant: str,
    target: int | str,
    newest: Version,
    created: bool,
    actor: str,
    step: Step,
) -> PushedMove:
    """One variant a file names, through the release check. **`latest` in a file resolves to a
    number**: the newest version's, which the variant is then pinned to (a file never makes a
    variant follow new versions; the API, CLI and console do, as an explicit choice). It moves
    an existing variant only when this push creates that version, so re-pushing an unchanged
    file changes nothing and never undoes a rollback. A number pins the variant to it; one the
    variant serves already leaves it as it is (following included), so pushing what `pull`
    wrote changes nothing."""
    current = (
        await conn.execute(
            sa.select(variants.c.version_id, variants.c.follows_latest).where(
                variants.c.deployment_id == deployment.id, variants.c.name == variant
            )
        )
    ).first()
    if target == LATEST and current is not None and not created:
        served = await _number_of(conn, current.version_id) or 0
        return PushedMove(deployment.name, variant, served, False, served)
    prompt = await prompt_by_id(conn, deployment.prompt_id)
    version = newest if target == LATEST else await target_version(conn, prompt, target)
    follows = None if current is not None and current.version_id == version.id else False
    checked = await release_move(
        conn, workspace_id, deployment, variant, version, actor, "push", follows, step.release, "pushing"
    )
    return await _pushed(conn, deployment.name, variant, version, checked)


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
    checked: Checked,
    *,
    follows: bool = False,
) -> PushedMove:
    """What a push did to one variant, which pointed at `checked.previous` (a version id) before."""
    changed = checked.previous != version.id
    from_version = await _number_of(conn, checked.previous)
    return PushedMove(
        deployment,
        variant,
        version.number,
        changed,
        from_version,
        follows_latest=follows,
        check=checked.report,
    )


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
