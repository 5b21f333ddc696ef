"""Pointing a variant at a version: the one write behind every move, push, rollback, import and
`latest` follower, with the history row it appends, and the release check every one of them
passes in the same transaction (`release_move`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from promptdeck.domain.deployments import Version
from promptdeck.domain.promotion import RECENT_RUNS, forced_note, promotion_risks, refusal, release_report
from promptdeck.domain.prompts import check_slug
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.audit_log import record_move
from promptdeck.store.catalog_facts import note_move
from promptdeck.store.tables import deployments, prompt_versions, variant_moves, variants
from promptdeck.store.variant_runs import recent_inputs

FOLLOW_NOTE = "latest"  # the note of a move made because a new version was created

GateKey = tuple[str, str, int]  # (deployment, variant, version number)


@dataclass
class Release:
    """How one write may change what variants serve. `gates` holds the evaluation gates' failures
    the engine found before the write, per (deployment, variant, version); the input contract is
    judged here, inside the write's transaction, so no run or move can slip between check and
    write. A refused change raises 409 (`raise`), is left undone and kept in `held` (`hold`: a
    save's followers), or is done anyway and only reported (`report`: a dry run, rolled back).
    Every change checked is reported in `reports`."""

    force: bool = False
    reason: str = ""
    gates: Mapping[GateKey, list[dict[str, Any]]] = field(default_factory=dict)
    on_refusal: Literal["raise", "hold", "report"] = "raise"
    followers: bool = True  # False: a save leaves followers where they are (the engine moves them)
    reports: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)


class Checked(NamedTuple):
    """What `release_move` did: whether it moved, the version id served before, and the check's
    report (None: the variant served that version already, so there was nothing to check)."""

    moved: bool
    previous: str | None
    report: dict[str, Any] | None


async def check_change(
    conn: AsyncConnection,
    workspace_id: str,
    deployment: Any,
    variant: str,
    version: Version,
    gates: Mapping[GateKey, list[dict[str, Any]]],
) -> dict[str, Any] | None:
    """The release report for pointing `variant` of `deployment` (its row) at `version`, or None
    when the variant serves it already. Risks are judged against the variant's recent runs."""
    current_row = (
        await conn.execute(
            sa.select(prompt_versions)
            .join(variants, variants.c.version_id == prompt_versions.c.id)
            .where(variants.c.deployment_id == deployment.id, variants.c.name == variant)
        )
    ).first()
    if current_row is not None and current_row.id == version.id:
        return None
    from promptdeck.store.prompts import spec_from_row  # prompts imports this module (followers)

    current = spec_from_row(current_row) if current_row is not None else None
    recent = await recent_inputs(conn, workspace_id, deployment.name, variant, RECENT_RUNS)
    failures = gates.get((deployment.name, variant, version.number), [])
    return release_report(
        deployment.name,
        variant,
        version.number,
        current_row.number if current_row is not None else None,
        promotion_risks(current, version.spec, recent),
        failures,
    )


async def release_move(
    conn: AsyncConnection,
    workspace_id: str,
    deployment: Any,
    variant: str,
    version: Version,
    actor: str,
    note: str,
    follows_latest: bool | None,
    release: Release,
    what: str = "moving",
) -> Checked:
    """`move`, behind the release check. Not moved only when the check refused it and the
    release holds refusals."""
    report = await check_change(conn, workspace_id, deployment, variant, version, release.gates)
    if report is not None:
        release.reports.append(report)
        if not report["safe"] and release.on_refusal != "report":
            if not release.force:
                if release.on_refusal == "hold":
                    release.held.append(report)
                    return Checked(False, None, report)
                raise refusal(report, what)
            note = forced_note(note, True, release.reason)
    previous = await move(conn, deployment.id, variant, version.id, actor, note, follows_latest)
    return Checked(True, previous, report)


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
    await record_entry(conn, variant_id, previous, version_id, actor, note, now)
    await record_move(conn, deployment_id, variant, previous, version_id, actor, note)  # audit log
    await note_move(conn, deployment_id, variant, previous, version_id, actor, note)
    return previous


async def record_entry(
    conn: AsyncConnection,
    variant_id: str,
    previous: str | None,
    version_id: str,
    actor: str,
    note: str,
    at: datetime | None = None,
) -> None:
    """Append a history row (`previous` None: the variant was created). One from a version to
    itself changes nothing served: a forced split leaves one, so its reason is kept with the moves."""
    await conn.execute(
        variant_moves.insert().values(
            id=new_id(),
            variant_id=variant_id,
            from_version_id=previous,
            to_version_id=version_id,
            actor=actor,
            note=note,
            created_at=at or utcnow(),
        )
    )


async def move_followers(
    conn: AsyncConnection, prompt: Any, version: Version, actor: str, release: Release | None = None
) -> list[tuple[str, str, Checked]]:
    """Point every variant that follows `latest` (of any deployment of this prompt) at `version`,
    each through the release check (by default a refused follower stays where it is, kept in the
    release's `held`); returns (deployment name, variant, what was done) of each moved, so a push
    can say so."""
    release = release if release is not None else Release(on_refusal="hold")
    if not release.followers:
        return []
    rows = await conn.execute(
        sa.select(deployments, variants.c.name.label("variant"))
        .join(deployments, deployments.c.id == variants.c.deployment_id)
        .where(deployments.c.prompt_id == prompt.id, variants.c.follows_latest == sa.true())
        .order_by(deployments.c.name, variants.c.name)
    )
    moved = []
    for row in rows.all():
        checked = await release_move(
            conn, prompt.workspace_id, row, row.variant, version, actor, FOLLOW_NOTE, None, release
        )
        if checked.moved:
            moved.append((row.name, row.variant, checked))
    return moved
