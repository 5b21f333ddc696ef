"""Prompts, their immutable versions, deployments and variant pointers.

Every write that touches several rows runs in one transaction, so nothing is
ever half-applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.deployments import LATEST, Deployment, Version
from promptdeck.domain.errors import (
    Conflict,
    NotFound,
    PromptdeckError,
    UnsafePromotion,
    ValidationFailed,
)
from promptdeck.domain.promotion import RECENT_RUNS, describe, promotion_risks
from promptdeck.domain.promptfile import check_document
from promptdeck.domain.prompts import (
    UNDECLARED_VARIABLES,
    InputSpec,
    Message,
    PromptSpec,
    check_slug,
    parse_spec,
)
from promptdeck.domain.reliability import parse_variant_config
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.domain.templating import DEFAULT_SYNTAX
from promptdeck.store.tables import deployments, prompt_versions, prompts, variant_moves, variants
from promptdeck.store.variant_runs import recent_inputs, version_stats

FOLLOW_NOTE = "latest"  # the note of a move made because a new version was created


def _spec(row: Any) -> PromptSpec:
    return PromptSpec(
        model=row.model,
        messages=tuple(Message(m["role"], m["content"]) for m in row.messages),
        params=dict(row.params),
        inputs={name: InputSpec(**decl) for name, decl in row.inputs.items()},
        tools=row.tools,
        tool_choice=row.tool_choice,
        response_format=row.response_format,
        template_syntax=row.template_syntax or DEFAULT_SYNTAX,
        extra_inputs=row.extra_inputs or "allow",
    )


def _version(row: Any, slug: str) -> Version:
    return Version(
        id=row.id,
        prompt_id=row.prompt_id,
        prompt_slug=slug,
        number=row.number,
        spec=_spec(row),
        note=row.note,
        author=row.author,
        created_at=row.created_at,
    )


@dataclass
class PushReport:
    """What a push changed; `changed` is False when the file matched the server exactly."""

    prompt: str
    prompt_created: bool = False
    version: int = 0
    version_created: bool = False
    moves: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.prompt_created or self.version_created or any(m["changed"] for m in self.moves)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "prompt_created": self.prompt_created,
            "version": self.version,
            "version_created": self.version_created,
            "variants": self.moves,
            "changed": self.changed,
        }


class CatalogStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # ── prompts ──────────────────────────────────────────────────────────────

    async def create_prompt(
        self,
        workspace_id: str,
        slug: str,
        name: str = "",
        description: str = "",
        undeclared_variables: str = "declare",
    ) -> dict[str, Any]:
        check_slug(slug, "prompt slug")
        check_undeclared_variables(undeclared_variables)
        try:
            async with self.engine.begin() as conn:
                if await self._prompt_row(conn, workspace_id, slug) is not None:
                    raise Conflict(f"a prompt with slug {slug!r} already exists")
                return await self._insert_prompt(
                    conn, workspace_id, slug, name, description, undeclared_variables
                )
        except IntegrityError as exc:  # created by a concurrent request between check and insert
            raise Conflict(f"a prompt with slug {slug!r} already exists") from exc

    async def update_prompt(self, workspace_id: str, slug: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a prompt's name, description or `undeclared_variables` setting (versions stay)."""
        unknown = sorted(set(changes) - {"name", "description", "undeclared_variables"})
        if unknown:
            raise ValidationFailed(f"cannot change {', '.join(unknown)} of a prompt")
        if "undeclared_variables" in changes:
            check_undeclared_variables(changes["undeclared_variables"])
        for key in ("name", "description"):
            if key in changes and not isinstance(changes[key], str):
                raise ValidationFailed(f"{key}: expected a string")
        async with self.engine.begin() as conn:
            row = await self._require_prompt(conn, workspace_id, slug)
            if changes:
                await conn.execute(prompts.update().where(prompts.c.id == row.id).values(**changes))
        return await self.get_prompt(workspace_id, slug)

    async def _undeclared_mode(self, conn: AsyncConnection, prompt: Any, document: dict[str, Any]) -> str:
        """A pushed file's `undeclared_variables` (stored on the prompt), else the prompt's own."""
        wanted = document.get("undeclared_variables")
        if wanted is not None and wanted != prompt.undeclared_variables:
            check_undeclared_variables(wanted)
            await conn.execute(
                prompts.update().where(prompts.c.id == prompt.id).values(undeclared_variables=wanted)
            )
            return str(wanted)
        return str(prompt.undeclared_variables or "declare")

    async def _insert_prompt(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        slug: str,
        name: str,
        description: str,
        undeclared_variables: str = "declare",
    ) -> dict[str, Any]:
        values = {
            "id": new_id(),
            "workspace_id": workspace_id,
            "slug": slug,
            "name": name or slug,
            "description": description,
            "created_at": utcnow(),
            "undeclared_variables": undeclared_variables,
        }
        await conn.execute(prompts.insert().values(**values))
        return values

    async def _prompt_row(self, conn: AsyncConnection, workspace_id: str, slug: str) -> Any:
        return (
            await conn.execute(
                sa.select(prompts).where(prompts.c.workspace_id == workspace_id, prompts.c.slug == slug)
            )
        ).first()

    async def _require_prompt(self, conn: AsyncConnection, workspace_id: str, slug: str) -> Any:
        row = await self._prompt_row(conn, workspace_id, slug)
        if row is None:
            raise NotFound(f"no prompt {slug!r} in this workspace")
        return row

    async def list_prompts(self, workspace_id: str) -> list[dict[str, Any]]:
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
            return [_prompt_dict(r) | {"latest_version": r.latest} for r in await conn.execute(query)]

    async def get_prompt(self, workspace_id: str, slug: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = await self._require_prompt(conn, workspace_id, slug)
        return _prompt_dict(row) | {
            "versions": [v_summary(v) for v in await self.list_versions(workspace_id, slug)]
        }

    # ── versions ─────────────────────────────────────────────────────────────

    async def create_version(
        self, workspace_id: str, slug: str, raw_spec: Any, note: str = "", author: str = ""
    ) -> Version:
        parse_spec(raw_spec)  # the version's own problems first, before looking the prompt up
        async with self.engine.begin() as conn:
            prompt = await self._require_prompt(conn, workspace_id, slug)
            spec = parse_spec(raw_spec, prompt.undeclared_variables)
            version = await self._insert_version(conn, prompt, spec, note, author)
            await self._move_followers(conn, prompt, version, author)
            return version

    async def _move_followers(self, conn: AsyncConnection, prompt: Any, version: Version, actor: str) -> None:
        """Point every variant that follows `latest` (of any deployment of this prompt) at `version`."""
        rows = await conn.execute(
            sa.select(variants.c.deployment_id, variants.c.name, variants.c.config)
            .join(deployments, deployments.c.id == variants.c.deployment_id)
            .where(deployments.c.prompt_id == prompt.id)
        )
        for row in rows.all():
            if isinstance(row.config, dict) and row.config.get("follows_latest"):
                await self._move(conn, row.deployment_id, row.name, version.id, actor, FOLLOW_NOTE)

    async def _insert_version(
        self, conn: AsyncConnection, prompt: Any, spec: PromptSpec, note: str, author: str
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
        return Version(values["id"], prompt.id, prompt.slug, number, spec, note, author, values["created_at"])

    async def list_versions(self, workspace_id: str, slug: str) -> list[Version]:
        async with self.engine.connect() as conn:
            prompt = await self._require_prompt(conn, workspace_id, slug)
            rows = await conn.execute(
                sa.select(prompt_versions)
                .where(prompt_versions.c.prompt_id == prompt.id)
                .order_by(prompt_versions.c.number)
            )
            return [_version(r, slug) for r in rows]

    async def get_version(self, workspace_id: str, slug: str, number: int) -> Version:
        async with self.engine.connect() as conn:
            prompt = await self._require_prompt(conn, workspace_id, slug)
            return await self._version_by_number(conn, prompt, number)

    async def _version_by_number(self, conn: AsyncConnection, prompt: Any, number: int) -> Version:
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
        return _version(row, prompt.slug)

    async def _latest_version(self, conn: AsyncConnection, prompt: Any) -> Version | None:
        row = (
            await conn.execute(
                sa.select(prompt_versions)
                .where(prompt_versions.c.prompt_id == prompt.id)
                .order_by(prompt_versions.c.number.desc())
                .limit(1)
            )
        ).first()
        return _version(row, prompt.slug) if row else None

    # ── deployments and variants ─────────────────────────────────────────────

    async def create_deployment(
        self,
        workspace_id: str,
        name: str,
        prompt_slug: str,
        variant_versions: dict[str, int | str],
        default_variant: str | None = None,
        actor: str = "",
    ) -> Deployment:
        check_slug(name, "deployment name")
        if not variant_versions:
            raise ValidationFailed('a deployment needs at least one variant, e.g. {"default": "latest"}')
        default_variant = default_variant or next(iter(variant_versions))
        if default_variant not in variant_versions:
            raise ValidationFailed(f"default_variant {default_variant!r} is not one of the variants given")
        try:
            async with self.engine.begin() as conn:
                prompt = await self._require_prompt(conn, workspace_id, prompt_slug)
                if await self._deployment_row(conn, workspace_id, name) is not None:
                    raise Conflict(f"a deployment named {name!r} already exists")
                deployment_id = await self._insert_deployment(
                    conn, workspace_id, name, prompt.id, default_variant
                )
                for variant, target in variant_versions.items():
                    version = await self._target_version(conn, prompt, target)
                    await self._move(
                        conn, deployment_id, variant, version.id, actor, "created", target == LATEST
                    )
        except IntegrityError as exc:  # created concurrently between the check and the insert
            raise Conflict(f"a deployment named {name!r} already exists") from exc
        return await self.load_deployment(workspace_id, name)

    async def _insert_deployment(
        self, conn: AsyncConnection, workspace_id: str, name: str, prompt_id: str, default_variant: str
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
        return deployment_id

    async def _deployment_row(self, conn: AsyncConnection, workspace_id: str, name: str) -> Any:
        return (
            await conn.execute(
                sa.select(deployments).where(
                    deployments.c.workspace_id == workspace_id, deployments.c.name == name
                )
            )
        ).first()

    async def _target_version(self, conn: AsyncConnection, prompt: Any, target: int | str) -> Version:
        if target == LATEST:
            latest = await self._latest_version(conn, prompt)
            if latest is None:
                raise ValidationFailed(f"prompt {prompt.slug!r} has no version yet")
            return latest
        if isinstance(target, bool) or not isinstance(target, int):
            raise ValidationFailed(f"a variant points at 'latest' or a version number; got {target!r}")
        return await self._version_by_number(conn, prompt, target)

    async def _move(
        self,
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
                sa.select(variants).where(
                    variants.c.deployment_id == deployment_id, variants.c.name == variant
                )
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
                    config={"follows_latest": True} if follows_latest else None,
                )
            )
        else:
            variant_id, previous = str(row.id), str(row.version_id)
            config = dict(row.config) if isinstance(row.config, dict) else {}
            if follows_latest is not None and bool(config.get("follows_latest")) != follows_latest:
                config.pop("follows_latest", None)
                if follows_latest:
                    config["follows_latest"] = True
                await conn.execute(
                    variants.update().where(variants.c.id == variant_id).values(config=config or None)
                )
            if previous == version_id:
                return previous
            await conn.execute(
                variants.update()
                .where(variants.c.id == variant_id)
                .values(version_id=version_id, updated_at=now)
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
        return previous

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
    ) -> Deployment:
        """Move a variant, refusing a move its callers' recent inputs say is unsafe unless forced
        (with a reason, kept in the move's note)."""
        async with self.engine.begin() as conn:
            row = await self._deployment_row(conn, workspace_id, deployment)
            if row is None:
                raise NotFound(f"no deployment {deployment!r} in this workspace")
            prompt = (await conn.execute(sa.select(prompts).where(prompts.c.id == row.prompt_id))).one()
            version = await self._target_version(conn, prompt, target)
            note = await self._check_promotion(conn, workspace_id, row, variant, version, note, force, reason)
            await self._move(conn, row.id, variant, version.id, actor, note, target == LATEST)
        return await self.load_deployment(workspace_id, deployment)

    async def _check_promotion(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        deployment: Any,
        variant: str,
        version: Version,
        note: str,
        force: bool,
        reason: str,
    ) -> str:
        """The note to record; raises `UnsafePromotion` for an unforced risky move."""
        if force and not reason.strip():
            raise ValidationFailed("a forced move needs a reason (it is kept in the variant's history)")
        current_row = (
            await conn.execute(
                sa.select(prompt_versions)
                .join(variants, variants.c.version_id == prompt_versions.c.id)
                .where(variants.c.deployment_id == deployment.id, variants.c.name == variant)
            )
        ).first()
        if current_row is not None and current_row.id == version.id:
            return note
        current = _spec(current_row) if current_row is not None else None
        recent = await recent_inputs(conn, workspace_id, deployment.name, variant, RECENT_RUNS)
        risks = promotion_risks(current, version.spec, recent)
        if not risks:
            return note
        if not force:
            raise UnsafePromotion(
                f"moving {deployment.name}/{variant} to version {version.number} would break its callers: "
                f'{describe(risks)}. Send "force": true with a "reason" to move it anyway',
                details={"version": version.number, "inputs": risks},
            )
        forced = f"forced: {reason.strip()}"
        return f"{note} ({forced})" if note else forced

    async def history(self, workspace_id: str, deployment: str, variant: str) -> list[dict[str, Any]]:
        """A variant's moves, newest first: who (the key's name), when, from and to which version."""
        async with self.engine.connect() as conn:
            variant_id = await self._variant_id(conn, workspace_id, deployment, variant)
            return await self._history(conn, variant_id)

    async def _variant_id(
        self, conn: AsyncConnection, workspace_id: str, deployment: str, variant: str
    ) -> str:
        row = await self._deployment_row(conn, workspace_id, deployment)
        if row is None:
            raise NotFound(f"no deployment {deployment!r} in this workspace")
        found = (
            await conn.execute(
                sa.select(variants.c.id).where(variants.c.deployment_id == row.id, variants.c.name == variant)
            )
        ).first()
        if found is None:
            raise NotFound(f"deployment {deployment!r} has no variant {variant!r}")
        return str(found.id)

    async def _history(
        self, conn: AsyncConnection, variant_id: str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        source = prompt_versions.alias("source")
        target = prompt_versions.alias("target")
        query = (
            sa.select(variant_moves, source.c.number.label("from_number"), target.c.number.label("to_number"))
            .outerjoin(source, source.c.id == variant_moves.c.from_version_id)
            .join(target, target.c.id == variant_moves.c.to_version_id)
            .where(variant_moves.c.variant_id == variant_id)
            .order_by(variant_moves.c.created_at.desc(), variant_moves.c.id.desc())
            .limit(limit)
        )
        return [
            {
                "id": r.id,
                "actor": r.actor,
                "created_at": r.created_at,
                "from_version": r.from_number,
                "to_version": r.to_number,
                "from_version_id": r.from_version_id,
                "to_version_id": r.to_version_id,
                "note": r.note,
            }
            for r in await conn.execute(query)
        ]

    async def rollback(
        self, workspace_id: str, deployment: str, variant: str, actor: str = "", note: str = ""
    ) -> Deployment:
        """Move a variant back to the version it pointed at before its last move; recorded as a
        move (so a second rollback undoes the first). It no longer follows `latest`."""
        async with self.engine.begin() as conn:
            variant_id = await self._variant_id(conn, workspace_id, deployment, variant)
            last = await self._history(conn, variant_id, limit=1)
            if not last or last[0]["from_version_id"] is None:
                raise Conflict(
                    f"{deployment}/{variant} has never been moved since it was created: "
                    "there is no earlier version to roll back to"
                )
            previous = last[0]
            row = await self._deployment_row(conn, workspace_id, deployment)
            label = f"rollback from version {previous['to_version']}"
            await self._move(
                conn,
                row.id,
                variant,
                previous["from_version_id"],
                actor,
                f"{label}: {note}" if note else label,
                False,
            )
        return await self.load_deployment(workspace_id, deployment)

    async def variant_stats(self, workspace_id: str, deployment: str, variant: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            await self._variant_id(conn, workspace_id, deployment, variant)
            return await version_stats(conn, workspace_id, deployment, variant)

    async def list_deployments(self, workspace_id: str) -> list[Deployment]:
        async with self.engine.connect() as conn:
            names = await conn.execute(
                sa.select(deployments.c.name)
                .where(deployments.c.workspace_id == workspace_id)
                .order_by(deployments.c.name)
            )
            return [await self._load(conn, workspace_id, n.name) for n in names.all()]

    async def load_deployment(self, workspace_id: str, name: str) -> Deployment:
        """A deployment with every variant resolved to its version: what the engine caches."""
        async with self.engine.connect() as conn:
            return await self._load(conn, workspace_id, name)

    async def _load(self, conn: AsyncConnection, workspace_id: str, name: str) -> Deployment:
        row = await self._deployment_row(conn, workspace_id, name)
        if row is None:
            raise NotFound(f"no deployment named {name!r}")
        rows = (
            await conn.execute(
                sa.select(
                    variants.c.name.label("variant"), variants.c.config, prompt_versions, prompts.c.slug
                )
                .join(prompt_versions, prompt_versions.c.id == variants.c.version_id)
                .join(prompts, prompts.c.id == prompt_versions.c.prompt_id)
                .where(variants.c.deployment_id == row.id)
            )
        ).all()
        resolved = {r.variant: _version(r, r.slug) for r in rows}
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
            named_versions = {v.number: _version(v, v.slug) for v in found}
        prompt = (await conn.execute(sa.select(prompts).where(prompts.c.id == row.prompt_id))).one()
        return Deployment(
            row.id,
            workspace_id,
            row.name,
            row.prompt_id,
            row.default_variant,
            resolved,
            configs,
            named_versions,
            await self._latest_version(conn, prompt),
        )

    async def set_variant_config(
        self, workspace_id: str, deployment: str, variant: str, raw: Any
    ) -> Deployment:
        """Set a variant's timeouts, retries, fallbacks and traffic split; the versions they name
        must be versions of the deployment's prompt. Whether the variant follows `latest` is
        kept as it is: only moves change it."""
        config = parse_variant_config(raw)
        async with self.engine.begin() as conn:
            row = await self._deployment_row(conn, workspace_id, deployment)
            if row is None:
                raise NotFound(f"no deployment {deployment!r} in this workspace")
            prompt = (await conn.execute(sa.select(prompts).where(prompts.c.id == row.prompt_id))).one()
            for number in [f.version for f in config.fallbacks] + [a.version for a in config.split]:
                if number is not None:
                    await self._version_by_number(conn, prompt, number)
            stored = (
                await conn.execute(
                    sa.select(variants.c.config).where(
                        variants.c.deployment_id == row.id, variants.c.name == variant
                    )
                )
            ).first()
            if stored is None:
                raise NotFound(f"deployment {deployment!r} has no variant {variant!r}")
            follows = isinstance(stored.config, dict) and bool(stored.config.get("follows_latest"))
            data = config.to_dict()
            data.pop("follows_latest", None)
            if follows:
                data["follows_latest"] = True
            await conn.execute(
                variants.update()
                .where(variants.c.deployment_id == row.id, variants.c.name == variant)
                .values(config=data)
            )
        return await self.load_deployment(workspace_id, deployment)

    # ── prompts as code ──────────────────────────────────────────────────────

    async def push(
        self,
        workspace_id: str,
        document: dict[str, Any],
        actor: str = "",
        *,
        force: bool = False,
        dry_run: bool = False,
    ) -> PushReport:
        """Apply one prompt file: create the prompt if new, add a version only if the content
        changed, and move the named variants. Idempotent; all or nothing. See `push_many`."""
        return (await self.push_many(workspace_id, [document], actor, force=force, dry_run=dry_run))[0]

    async def push_many(
        self,
        workspace_id: str,
        documents: list[dict[str, Any]],
        actor: str = "",
        *,
        force: bool = False,
        dry_run: bool = False,
        names: list[str] | None = None,
    ) -> list[PushReport]:
        """Apply prompt files in order, in one transaction: all of them or none.

        A file that records the `version` it was pulled from is refused (`Conflict`) when the
        prompt has a newer version and the file would publish another on top of it, unless
        `force`. With `dry_run` the same work is done and rolled back: the reports are the plan."""
        for index, document in enumerate(documents):
            with _naming(names, index):
                check_document(document)
        reports: list[PushReport] = []
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
        return reports

    async def _apply(
        self, conn: AsyncConnection, workspace_id: str, document: dict[str, Any], actor: str, force: bool
    ) -> PushReport:
        slug, spec, deploy = document["prompt"], parse_spec(document), document.get("deploy") or {}
        report = PushReport(prompt=slug)
        prompt = await self._prompt_row(conn, workspace_id, slug)
        if prompt is None:
            await self._insert_prompt(
                conn,
                workspace_id,
                slug,
                str(document.get("name") or ""),
                str(document.get("description") or ""),
            )
            prompt = await self._require_prompt(conn, workspace_id, slug)
            report.prompt_created = True
        if await self._undeclared_mode(conn, prompt, document) == "refuse":
            spec = parse_spec(document, "refuse")
        latest = await self._latest_version(conn, prompt)
        if latest is None or latest.spec.content_hash != spec.content_hash:
            based_on = document.get("version")
            if latest is not None and isinstance(based_on, int) and based_on < latest.number and not force:
                raise Conflict(
                    f"prompt {slug!r} has version {latest.number} on the server, newer than the version "
                    f"{based_on} this file was pulled from: pull it again and merge, or push with --force",
                    details={"prompt": slug, "file_version": based_on, "server_version": latest.number},
                )
            latest = await self._insert_version(conn, prompt, spec, str(document.get("note") or ""), actor)
            report.version_created = True
        report.version = latest.number
        for deployment_name, variant_targets in deploy.items():
            check_slug(deployment_name, "deployment name")
            row = await self._deployment_row(conn, workspace_id, deployment_name)
            if row is None:
                deployment_id = await self._insert_deployment(
                    conn, workspace_id, deployment_name, prompt.id, next(iter(variant_targets))
                )
            elif row.prompt_id != prompt.id:
                raise Conflict(f"deployment {deployment_name!r} already serves another prompt")
            else:
                deployment_id = row.id
            for variant, target in variant_targets.items():
                version = await self._target_version(conn, prompt, target)
                previous = await self._move(
                    conn, deployment_id, variant, version.id, actor, "push", target == LATEST
                )
                report.moves.append(
                    {
                        "deployment": deployment_name,
                        "variant": variant,
                        "version": version.number,
                        "changed": previous != version.id,
                        "from_version": await self._number_of(conn, previous),
                    }
                )
        if report.version_created:  # after the file's own moves, so they are reported as its own
            await self._move_followers(conn, prompt, latest, actor)
        return report

    async def _number_of(self, conn: AsyncConnection, version_id: str | None) -> int | None:
        if version_id is None:
            return None
        found = await conn.execute(
            sa.select(prompt_versions.c.number).where(prompt_versions.c.id == version_id)
        )
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


def _prompt_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "slug": row.slug,
        "name": row.name,
        "description": row.description,
        "undeclared_variables": row.undeclared_variables,
        "created_at": row.created_at,
    }


def check_undeclared_variables(value: Any) -> str:
    if value not in UNDECLARED_VARIABLES:
        raise ValidationFailed(
            f"undeclared_variables: expected one of {', '.join(UNDECLARED_VARIABLES)}; got {value!r}"
        )
    return str(value)


def v_summary(version: Version) -> dict[str, Any]:
    return {
        "id": version.id,
        "prompt": version.prompt_slug,
        "number": version.number,
        "note": version.note,
        "author": version.author,
        "created_at": version.created_at,
        **version.spec.to_dict(),
    }


def deployment_dict(deployment: Deployment) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "name": deployment.name,
        "prompt_id": deployment.prompt_id,
        "default_variant": deployment.default_variant,
        "variants": {
            name: {
                "version": v.number,
                "version_id": v.id,
                "prompt": v.prompt_slug,
                "config": deployment.config(name).to_dict(),
            }
            for name, v in sorted(deployment.variants.items())
        },
    }
