"""Deployments and their variants: creating them, moving and rolling back variants (every move
recorded in the history), variant configs, and loading a deployment resolved for the engine.

Every write publishes `CatalogChanged` once it has committed, so the engine's cache of resolved
deployments never serves a stale variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.change_events import (
    CatalogChanged,
    ChangeFeed,
    DeploymentDeleted,
    VariantMoved,
    VariantRolledBack,
)
from promptdeck.domain.deployments import LATEST, Deployment, Version
from promptdeck.domain.errors import Conflict, NotFound, ValidationFailed
from promptdeck.domain.promotion import forced_note, refusal, release_report
from promptdeck.domain.prompts import check_slug
from promptdeck.domain.reliability import VariantConfig, parse_variant_config
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.catalog_facts import note_deployment, recording
from promptdeck.store.prompts import (
    latest_version,
    prompt_by_id,
    require_prompt,
    version_by_number,
    version_from_row,
)
from promptdeck.store.tables import deployments, prompt_versions, prompts, variant_moves, variants
from promptdeck.store.variant_moves import (
    GateKey,
    Release,
    check_change,
    move,
    move_followers,
    record_entry,
    release_move,
)
from promptdeck.store.variant_runs import version_stats


@dataclass(frozen=True, slots=True)
class VariantMove:
    """One entry of a variant's history: who moved it, when, from and to which version, and why."""

    id: str
    actor: str
    created_at: datetime
    from_version: int | None
    to_version: int
    from_version_id: str | None
    to_version_id: str
    note: str


class DeploymentStore:
    def __init__(self, engine: AsyncEngine, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.changes = changes or ChangeFeed()

    async def create_deployment(
        self,
        workspace_id: str,
        name: str,
        prompt_slug: str,
        variant_versions: dict[str, int | str] | None,
        default_variant: str | None = None,
        actor: str = "",
    ) -> Deployment:
        """None for `variant_versions`: one variant, `default`, pinned to the prompt's newest
        version. Following `latest` is a choice a caller makes by naming it, never a default."""
        check_slug(name, "deployment name")
        if variant_versions is not None and not variant_versions:
            raise ValidationFailed('a deployment needs at least one variant, e.g. {"default": 1}')
        default_variant = default_variant or next(iter(variant_versions or {"default": 0}))
        if variant_versions is not None and default_variant not in variant_versions:
            raise ValidationFailed(f"default_variant {default_variant!r} is not one of the variants given")
        try:
            with recording() as facts:
                async with self.engine.begin() as conn:
                    prompt = await require_prompt(conn, workspace_id, prompt_slug)
                    if variant_versions is None:
                        newest = await latest_version(conn, prompt)
                        if newest is None:
                            raise ValidationFailed(
                                f"prompt {prompt_slug!r} has no version to deploy yet: save one"
                            )
                        variant_versions = {default_variant: newest.number}
                    if await deployment_row(conn, workspace_id, name) is not None:
                        raise Conflict(f"a deployment named {name!r} already exists")
                    deployment_id = await insert_deployment(
                        conn, workspace_id, name, prompt.id, default_variant
                    )
                    for variant, target in variant_versions.items():
                        version = await target_version(conn, prompt, target)
                        follows = target == LATEST
                        await move(conn, deployment_id, variant, version.id, actor, "created", follows)
        except IntegrityError as exc:  # created concurrently between the check and the insert
            raise Conflict(f"a deployment named {name!r} already exists") from exc
        # also a name the engine cached as unknown
        self.changes.publish(CatalogChanged(workspace_id, tuple(facts)))
        return await self.load_deployment(workspace_id, name)

    async def move_variant(
        self,
        workspace_id: str,
        deployment: str,
        variant: str,
        target: int | str,
        actor: str = "",
        note: str = "",
        force: bool = False,
        reason: str = "",
        gates: Mapping[GateKey, list[dict[str, Any]]] | None = None,
    ) -> Deployment:
        """Move a variant through the release check: refused (409, with the report) when its
        callers' recent inputs or the `gates` failures found before say it is unsafe, unless
        forced with a reason (kept in the move's note)."""
        forced_note(note, force, reason)  # a force without a reason is refused, safe or not
        release = Release(force, reason, gates or {})
        with recording() as facts:
            async with self.engine.begin() as conn:
                row = await require_deployment(conn, workspace_id, deployment)
                prompt = await prompt_by_id(conn, row.prompt_id)
                version = await target_version(conn, prompt, target)
                follows = target == LATEST
                await release_move(conn, workspace_id, row, variant, version, actor, note, follows, release)
        self.changes.publish(CatalogChanged(workspace_id, tuple(facts)))
        return await self.load_deployment(workspace_id, deployment)

    async def check(
        self,
        workspace_id: str,
        deployment: str,
        variant: str,
        target: int | str,
        gates: Mapping[GateKey, list[dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        """The release check's report for pointing a variant at a version, moving nothing (the
        preview). A variant already serving it reports safe, with nothing to check."""
        async with self.engine.connect() as conn:
            row = await require_deployment(conn, workspace_id, deployment)
            prompt = await prompt_by_id(conn, row.prompt_id)
            version = await target_version(conn, prompt, target)
            report = await check_change(conn, workspace_id, row, variant, version, gates or {})
        return report or release_report(deployment, variant, version.number, version.number, [])

    async def target_number(self, workspace_id: str, deployment: str, target: int | str) -> int:
        """The version number a move to `target` (`latest` or a number) would serve."""
        async with self.engine.connect() as conn:
            row = await require_deployment(conn, workspace_id, deployment)
            return (await target_version(conn, await prompt_by_id(conn, row.prompt_id), target)).number

    async def rollback_target(self, workspace_id: str, deployment: str, variant: str) -> int | None:
        """The version number a rollback would serve (None: the variant was never moved)."""
        async with self.engine.connect() as conn:
            variant_id = await self._variant_id(conn, workspace_id, deployment, variant)
            last = await self._history(conn, variant_id, limit=1, moves_only=True)
        return last[0].from_version if last else None

    async def follow(
        self, workspace_id: str, prompt_slug: str, number: int, actor: str, release: Release
    ) -> None:
        """Move the prompt's `latest` followers to version `number` through the release check (a
        save's second step when a follower has gates: they judge the saved version)."""
        with recording() as facts:
            async with self.engine.begin() as conn:
                prompt = await require_prompt(conn, workspace_id, prompt_slug)
                version = await version_by_number(conn, prompt, number)
                await move_followers(conn, prompt, version, actor, release)
        self.changes.publish(CatalogChanged(workspace_id, tuple(facts)))

    async def history(self, workspace_id: str, deployment: str, variant: str) -> list[VariantMove]:
        """A variant's moves, newest first: who (the key's name), when, from and to which version."""
        async with self.engine.connect() as conn:
            variant_id = await self._variant_id(conn, workspace_id, deployment, variant)
            return await self._history(conn, variant_id)

    async def _variant_id(
        self, conn: AsyncConnection, workspace_id: str, deployment: str, variant: str
    ) -> str:
        row = await require_deployment(conn, workspace_id, deployment)
        found = (
            await conn.execute(
                sa.select(variants.c.id).where(variants.c.deployment_id == row.id, variants.c.name == variant)
            )
        ).first()
        if found is None:
            raise NotFound(f"deployment {deployment!r} has no variant {variant!r}")
        return str(found.id)

    async def _history(
        self, conn: AsyncConnection, variant_id: str, limit: int | None = None, moves_only: bool = False
    ) -> list[VariantMove]:
        """`moves_only`: leave out the entries that changed no version (a forced split's)."""
        source = prompt_versions.alias("source")
        target = prompt_versions.alias("target")
        query = (
            sa.select(variant_moves, source.c.number.label("from_number"), target.c.number.label("to_number"))
            .outerjoin(source, source.c.id == variant_moves.c.from_version_id)
            .join(target, target.c.id == variant_moves.c.to_version_id)
            .where(variant_moves.c.variant_id == variant_id)
            .where(
                variant_moves.c.from_version_id != variant_moves.c.to_version_id if moves_only else sa.true()
            )
            .order_by(variant_moves.c.created_at.desc(), variant_moves.c.id.desc())
            .limit(limit)
        )
        return [
            VariantMove(
                id=r.id,
                actor=r.actor,
                created_at=r.created_at,
                from_version=r.from_number,
                to_version=r.to_number,
                from_version_id=r.from_version_id,
                to_version_id=r.to_version_id,
                note=r.note,
            )
            for r in await conn.execute(query)
        ]

    async def rollback(
        self,
        workspace_id: str,
        deployment: str,
        variant: str,
        actor: str = "",
        note: str = "",
        *,
        force: bool = False,
        reason: str = "",
        gates: Mapping[GateKey, list[dict[str, Any]]] | None = None,
    ) -> Deployment:
        """Move a variant back to the version it pointed at before its last move; recorded as a
        move (so a second rollback undoes the first). It no longer follows `latest`. It passes
        the same check as a move: the older version may need an input today's callers do not
        send, so a risky rollback is refused unless forced with a reason."""
        forced_note(note, force, reason)
        release = Release(force, reason, gates or {})
        with recording() as facts:
            async with self.engine.begin() as conn:
                variant_id = await self._variant_id(conn, workspace_id, deployment, variant)
                last = await self._history(conn, variant_id, limit=1, moves_only=True)
                back_to = last[0].from_version_id if last else None
                if back_to is None:
                    raise Conflict(
                        f"{deployment}/{variant} has never been moved since it was created: "
                        "there is no earlier version to roll back to"
                    )
                row = await require_deployment(conn, workspace_id, deployment)
                prompt = await prompt_by_id(conn, row.prompt_id)
                older = (
                    await conn.execute(sa.select(prompt_versions).where(prompt_versions.c.id == back_to))
                ).one()
                label = f"rollback from version {last[0].to_version}"
                await release_move(
                    conn,
                    workspace_id,
                    row,
                    variant,
                    version_from_row(older, prompt.slug),
                    actor,
                    f"{label}: {note}" if note else label,
                    False,
                    release,
                    "rolling back",
                )
        rolled_back = tuple(VariantRolledBack.of(f) if type(f) is VariantMoved else f for f in facts)
        self.changes.publish(CatalogChanged(workspace_id, rolled_back))
        return await self.load_deployment(workspace_id, deployment)

    async def variant_stats(self, workspace_id: str, deployment: str, variant: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            await self._variant_id(conn, workspace_id, deployment, variant)
            return await version_stats(conn, workspace_id, deployment, variant)

    async def delete_deployment(self, workspace_id: str, name: str) -> None:
        """Remove a deployment, its variants and their history; its runs stay in the log."""
        async with self.engine.begin() as conn:
            row = await require_deployment(conn, workspace_id, name)
            prompt = await prompt_by_id(conn, row.prompt_id)
            owned = sa.select(variants.c.id).where(variants.c.deployment_id == row.id)
            await conn.execute(variant_moves.delete().where(variant_moves.c.variant_id.in_(owned)))
            await conn.execute(variants.delete().where(variants.c.deployment_id == row.id))
            await conn.execute(deployments.delete().where(deployments.c.id == row.id))
        self.changes.publish(CatalogChanged(workspace_id, (DeploymentDeleted(name, prompt.slug),)))

    async def list_deployments(self, workspace_id: str) -> list[Deployment]:
        async with self.engine.connect() as conn:
            names = await conn.execute(
                sa.select(deployments.c.name)
                .where(deployments.c.workspace_id == workspace_id)
                .order_by(deployments.c.name)
            )
            return [await self._load(conn, workspace_id, n.name) for n in names.all()]

    async def serving(self, workspace_id: str, prompt_slug: str) -> list[dict[str, Any]]:
        """What each variant of each deployment of a prompt serves now: after a save, this is
        what callers get (a save moves only the variants that follow `latest`)."""
        query = (
            sa.select(
                deployments.c.name.label("deployment"),
                variants.c.name.label("variant"),
                prompt_versions.c.number.label("version"),
                variants.c.follows_latest,
                (deployments.c.default_variant == variants.c.name).label("default"),
            )
            .join(deployments, deployments.c.id == variants.c.deployment_id)
            .join(prompts, prompts.c.id == deployments.c.prompt_id)
            .join(prompt_versions, prompt_versions.c.id == variants.c.version_id)
            .where(prompts.c.workspace_id == workspace_id, prompts.c.slug == prompt_slug)
            .order_by(deployments.c.name, variants.c.name)
        )
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def load_deployment(self, workspace_id: str, name: str) -> Deployment:
        """A deployment with every variant resolved to its version: what the engine caches."""
        async with self.engine.connect() as conn:
            return await self._load(conn, workspace_id, name)

    async def _load(self, conn: AsyncConnection, workspace_id: str, name: str) -> Deployment:
        row = await deployment_row(conn, workspace_id, name)
        if row is None:
            raise NotFound(f"no deployment named {name!r}")
        rows = (
            await conn.execute(
                sa.select(
                    variants.c.name.label("variant"),
                    variants.c.config,
                    variants.c.follows_latest,
                    prompt_versions,
                    prompts.c.slug,
                )
                .join(prompt_versions, prompt_versions.c.id == variants.c.version_id)
                .join(prompts, prompts.c.id == prompt_versions.c.prompt_id)
                .where(variants.c.deployment_id == row.id)
            )
        ).all()
        resolved = {r.variant: version_from_row(r, r.slug) for r in rows}
        configs = {r.variant: parse_variant_config(r.config) for r in rows if r.config}
        numbers = {f.version for c in configs.values() for f in c.fallbacks if f.version is not None}
        numbers |= {arm.version for c in configs.values() for arm in c.split}
        named_versions = {}
        if numbers:
            found = await conn.execute(
                sa.select(prompt_versions, prompts.c.slug)
                .join(prompts, prompts.c.id == prompt_versions.c.prompt_id)
                .where(prompt_versions.c.prompt_id == row.prompt_id, prompt_versions.c.number.in_(numbers))
            )
            named_versions = {v.number: version_from_row(v, v.slug) for v in found}
        return Deployment(
            row.id,
            workspace_id,
            row.name,
            row.prompt_id,
            row.default_variant,
            resolved,
            configs,
            named_versions,
            await latest_version(conn, await prompt_by_id(conn, row.prompt_id)),
            frozenset(r.variant for r in rows if r.follows_latest),
        )

    async def set_variant_config(
        self,
        workspace_id: str,
        deployment: str,
        variant: str,
        raw: Any,
        *,
        actor: str = "",
        force: bool = False,
        reason: str = "",
        gates: Mapping[GateKey, list[dict[str, Any]]] | None = None,
    ) -> Deployment:
        """Set a variant's timeouts, retries, fallbacks and traffic split; the versions they name
        must be versions of the deployment's prompt. A split that adds a version serves it to some
        callers, so each added version passes the release check (a forced one is recorded in the
        history, as an entry that changes no version). Whether the variant follows `latest` is
        not config (a `follows_latest` key is ignored): only moves change it."""
        config = raw if isinstance(raw, VariantConfig) else parse_variant_config(raw)
        forced_note("", force, reason)
        release = Release(force, reason, gates or {})
        with recording() as facts:
            async with self.engine.begin() as conn:
                row = await require_deployment(conn, workspace_id, deployment)
                prompt = await prompt_by_id(conn, row.prompt_id)
                for number in [f.version for f in config.fallbacks] + [a.version for a in config.split]:
                    if number is not None:
                        await version_by_number(conn, prompt, number)
                current = (
                    await conn.execute(
                        sa.select(variants).where(
                            variants.c.deployment_id == row.id, variants.c.name == variant
                        )
                    )
                ).first()
                if current is None:
                    raise NotFound(f"deployment {deployment!r} has no variant {variant!r}")
                await self._check_split(conn, workspace_id, row, prompt, current, config, actor, release)
                await conn.execute(
                    variants.update().where(variants.c.id == current.id).values(config=config_data(config))
                )
        self.changes.publish(CatalogChanged(workspace_id, tuple(facts)))
        return await self.load_deployment(workspace_id, deployment)

    async def _check_split(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        deployment: Any,
        prompt: Any,
        current: Any,
        config: VariantConfig,
        actor: str,
        release: Release,
    ) -> None:
        """Each version a new split adds (not in the old split) passes the release check."""
        before = parse_variant_config(current.config) if current.config else None
        old_arms = {arm.version for arm in before.split} if before is not None else set()
        for number in sorted({arm.version for arm in config.split} - old_arms):
            version = await version_by_number(conn, prompt, number)
            report = await check_change(conn, workspace_id, deployment, current.name, version, release.gates)
            if report is None or report["safe"]:
                continue
            if not release.force:
                raise refusal(report, "splitting traffic of")
            note = forced_note(f"split: version {number} added", True, release.reason)
            await record_entry(conn, current.id, current.version_id, current.version_id, actor, note)


def config_data(config: VariantConfig) -> dict[str, Any]:
    """A variant config as the `config` column holds it: never `follows_latest` (its own column)."""
    data = config.to_dict()
    data.pop("follows_latest", None)
    return data


async def deployment_row(conn: AsyncConnection, workspace_id: str, name: str) -> Any:
    return (
        await conn.execute(
            sa.select(deployments).where(
                deployments.c.workspace_id == workspace_id, deployments.c.name == name
            )
        )
    ).first()


async def require_deployment(conn: AsyncConnection, workspace_id: str, name: str) -> Any:
    row = await deployment_row(conn, workspace_id, name)
    if row is None:
        raise NotFound(f"no deployment {name!r} in this workspace")
    return row


async def insert_deployment(
    conn: AsyncConnection, workspace_id: str, name: str, prompt_id: str, default_variant: str
) -> str:
    deployment_id = new_id()
    await conn.execute(
        deployments.insert().values(
            id=deployment_id,
            workspace_id=workspace_id,
            name=name,
            prompt_id=prompt_id,
            default_variant=default_variant,
            created_at=utcnow(),
        )
    )
    await note_deployment(conn, name, prompt_id, default_variant)
    return deployment_id


async def target_version(conn: AsyncConnection, prompt: Any, target: int | str) -> Version:
    """The version a move names: `latest` (the prompt's newest) or a number."""
    if target == LATEST:
        latest = await latest_version(conn, prompt)
        if latest is None:
            raise ValidationFailed(f"prompt {prompt.slug!r} has no version yet")
        return latest
    if isinstance(target, bool) or not isinstance(target, int):
        raise ValidationFailed(f"a variant points at 'latest' or a version number; got {target!r}")
    return await version_by_number(conn, prompt, target)
