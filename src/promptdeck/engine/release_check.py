"""The release check every change of what a variant serves passes (docs/releases.md): a move, a
rollback, a push, a save's `latest` followers, a split and an import.

It composes two judgements. The input contract (domain/promotion.py) is judged by the store,
inside the write's own transaction, so no run or move slips between check and write. The
evaluation gates (a `GateChecker`, which may run an evaluation) are judged here, before the
write, and handed to it; the store refuses the change (409 `unsafe_promotion`, with the report)
unless it is forced with a reason, which the variant's history keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from promptdeck.domain.deployments import Deployment, Version
from promptdeck.domain.errors import NotFound, UnsafePromotion
from promptdeck.domain.reliability import VariantConfig
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.prompt_sync import ModelCheck, PushReport
from promptdeck.store.variant_moves import GateKey, Release
from promptdeck.store.workspace_archive import WorkspaceArchive


class GateChecker(Protocol):
    """Judges a variant's evaluation gates for a version it would serve (engine/release_gates.py)."""

    async def failures(
        self, workspace_id: str, deployment: str, variant: str, version_number: int
    ) -> list[dict[str, Any]]:
        """One entry per failed gate: `gate`, `dataset`, `problem` (a sentence) and its figures."""
        ...


@dataclass(frozen=True, slots=True)
class SavedVersion:
    """A save's outcome: the version, and the `latest` followers the check left where they were
    (each a release report), so the answer can say what callers still get."""

    version: Version
    held: list[dict[str, Any]] = field(default_factory=list)


class ReleaseCheck:
    def __init__(self, catalog: CatalogStore, gates: GateChecker | None = None) -> None:
        self.catalog = catalog
        self.gates = gates  # None: gates report nothing

    async def preview(
        self, workspace_id: str, deployment: str, variant: str, target: int | str
    ) -> dict[str, Any]:
        """The report a move would get (input risks and gate failures, `safe`), moving nothing."""
        number = await self.catalog.deployments.target_number(workspace_id, deployment, target)
        gates = await self._failures(workspace_id, [(deployment, variant, number)])
        return await self.catalog.deployments.check(workspace_id, deployment, variant, number, gates)

    async def move(
        self,
        workspace_id: str,
        deployment: str,
        variant: str,
        target: int | str,
        actor: str = "",
        note: str = "",
        *,
        force: bool = False,
        reason: str = "",
    ) -> Deployment:
        number = await self.catalog.deployments.target_number(workspace_id, deployment, target)
        gates = await self._failures(workspace_id, [(deployment, variant, number)])
        return await self.catalog.deployments.move_variant(
            workspace_id, deployment, variant, target, actor, note, force, reason, gates
        )

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
    ) -> Deployment:
        deployments = self.catalog.deployments
        back_to = await deployments.rollback_target(workspace_id, deployment, variant)
        gates = await self._failures(workspace_id, [(deployment, variant, back_to)] if back_to else [])
        return await deployments.rollback(
            workspace_id, deployment, variant, actor, note, force=force, reason=reason, gates=gates
        )

    async def set_config(
        self,
        workspace_id: str,
        deployment: str,
        variant: str,
        config: VariantConfig,
        actor: str = "",
        *,
        force: bool = False,
        reason: str = "",
    ) -> Deployment:
        """A split's versions are judged by the variant's gates too (the store checks only the
        versions the split adds)."""
        numbers = [arm.version for arm in config.split]
        gates = await self._failures(workspace_id, [(deployment, variant, n) for n in numbers])
        return await self.catalog.deployments.set_variant_config(
            workspace_id, deployment, variant, config, actor=actor, force=force, reason=reason, gates=gates
        )

    async def save_version(
        self, workspace_id: str, slug: str, raw_spec: Any, note: str = "", author: str = ""
    ) -> SavedVersion:
        """Save a version: it never fails because of a follower. A `latest` follower the check
        refuses stays where it is, and is reported. When a follower has gates, the version is
        saved first and the followers move in a second step, since a gate judges a saved version."""
        gated = await self._gated_followers(workspace_id, slug)
        prompts = self.catalog.prompts
        if not gated:
            release = Release(on_refusal="hold")
            version = await prompts.create_version(workspace_id, slug, raw_spec, note, author, release)
            return SavedVersion(version, release.held)
        version = await prompts.create_version(
            workspace_id, slug, raw_spec, note, author, Release(followers=False)
        )
        gates = await self._failures(workspace_id, [(d, v, version.number) for d, v in gated])
        follow = Release(on_refusal="hold", gates=gates)
        await self.catalog.deployments.follow(workspace_id, slug, version.number, author, follow)
        return SavedVersion(version, follow.held)

    async def push_many(
        self,
        workspace_id: str,
        documents: list[dict[str, Any]],
        actor: str = "",
        *,
        force: bool = False,
        reason: str = "",
        dry_run: bool = False,
        names: list[str] | None = None,
        check_model: ModelCheck | None = None,
    ) -> list[PushReport]:
        """Apply prompt files with every move checked, all or nothing. The plan (a dry run) says
        which moves gates must judge; a gated move to a version the push itself creates needs
        that version saved first, so then the push saves the versions (nothing moves), and a
        refused move leaves them saved and nothing moved (saving is not deploying)."""
        sync = self.catalog.sync
        kwargs: dict[str, Any] = {"force": force, "names": names, "check_model": check_model}
        if self.gates is None:  # the input contract alone: judged in the push's own transaction
            release = Release(force=force, reason=reason)
            return await sync.push_many(
                workspace_id, documents, actor, dry_run=dry_run, release=release, **kwargs
            )
        plan = await sync.push_many(workspace_id, documents, actor, dry_run=True, **kwargs)
        keys = [
            ((m.deployment, m.variant, m.version), report.version_created and m.version == report.version)
            for report in plan
            for m in report.moves
            if m.check is not None
        ]
        gated = {key for key, _ in keys if await self._gated(workspace_id, key[0], key[1])}
        new = {key for key, created in keys if created}
        if dry_run:  # a gate cannot judge a version not saved yet: the real push judges those
            release = Release(gates=await self._failures(workspace_id, gated - new))
            return await sync.push_many(
                workspace_id, documents, actor, dry_run=True, release=release, **kwargs
            )
        unsaved = gated & new
        just_saved: frozenset[str] = frozenset()
        if unsaved:
            saved = await sync.push_many(workspace_id, documents, actor, save_only=True, **kwargs)
            just_saved = frozenset(r.prompt for r in saved if r.version_created)
        gates = await self._failures(workspace_id, gated)
        release = Release(force=force, reason=reason, gates=gates)
        try:
            return await sync.push_many(
                workspace_id, documents, actor, release=release, just_saved=just_saved, **kwargs
            )
        except UnsafePromotion as exc:
            if just_saved:
                exc.message += (
                    f" (the new versions of {', '.join(sorted(just_saved))} were saved; nothing moved)"
                )
                exc.args = (exc.message,)
            raise

    async def import_archive(
        self, workspace_id: str, archive: bytes, actor: str = "", *, force: bool = False, reason: str = ""
    ) -> dict[str, int]:
        """An import's variants are new, so only the input contract judges them (the recent runs
        of a deployment of that name); the gates it brings judge the moves after it."""
        return await WorkspaceArchive(self.catalog).import_archive(
            workspace_id, archive, actor, force=force, reason=reason
        )

    async def _failures(
        self, workspace_id: str, keys: Iterable[GateKey]
    ) -> dict[GateKey, list[dict[str, Any]]]:
        """Each gated change's gate failures (none asked when no GateChecker is set)."""
        found: dict[GateKey, list[dict[str, Any]]] = {}
        if self.gates is None:
            return found
        for key in keys:
            if await self._gated(workspace_id, key[0], key[1]):
                failures = await self.gates.failures(workspace_id, *key)
                if failures:
                    found[key] = failures
        return found

    async def _gated(self, workspace_id: str, deployment: str, variant: str) -> bool:
        if self.gates is None:
            return False
        try:
            loaded = await self.catalog.deployments.load_deployment(workspace_id, deployment)
        except NotFound:
            return False  # a deployment the push creates: no gates yet
        return bool(loaded.config(variant).gates)

    async def _gated_followers(self, workspace_id: str, slug: str) -> list[tuple[str, str]]:
        if self.gates is None:
            return []
        serving = await self.catalog.deployments.serving(workspace_id, slug)
        return [
            (s["deployment"], s["variant"])
            for s in serving
            if s["follows_latest"] and await self._gated(workspace_id, s["deployment"], s["variant"])
        ]
