"""A prompt's datasets and their cases (docs/evaluations.md "Datasets").

Cases keep their order (`position`); adding or replacing many is one transaction, so a file is
imported whole or not at all. The row-level helpers take an open connection so that `push` and
the workspace import write datasets in their own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.dataset_files import case_data, check_dataset_name, check_evaluators
from promptdeck.domain.datasets import Dataset, DatasetCase
from promptdeck.domain.errors import Conflict, NotFound, ValidationFailed
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.prompts import require_prompt
from promptdeck.store.tables import dataset_cases, datasets, prompt_versions, prompts

CHANGES = frozenset({"name", "description", "evaluators"})
NO_VERSION = "this run has no prompt version (it failed before one was chosen), so no dataset to add it to"


class DatasetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # ── datasets ─────────────────────────────────────────────────────────────

    async def of_prompt(self, workspace_id: str, prompt_slug: str) -> list[Dataset]:
        """A prompt's datasets by name, each with its number of cases."""
        async with self.engine.connect() as conn:
            prompt = await require_prompt(conn, workspace_id, prompt_slug)
            return await datasets_of_prompt(conn, prompt.id, prompt.slug)

    async def dataset(self, workspace_id: str, prompt_slug: str, name: str) -> Dataset:
        async with self.engine.connect() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, name)
            return await _dataset(conn, row, prompt_slug)

    async def create(
        self,
        workspace_id: str,
        prompt_slug: str,
        name: str,
        description: str = "",
        evaluators: Sequence[Mapping[str, Any]] | None = None,
    ) -> Dataset:
        check_dataset_name(name)
        checked = check_evaluators(list(evaluators) if evaluators is not None else None)
        try:
            async with self.engine.begin() as conn:
                prompt = await require_prompt(conn, workspace_id, prompt_slug)
                if await dataset_row(conn, prompt.id, name) is not None:
                    raise _taken(prompt_slug, name)
                await insert_dataset(conn, workspace_id, prompt.id, name, description, checked)
        except IntegrityError as exc:  # made by a concurrent request between check and insert
            raise _taken(prompt_slug, name) from exc
        return await self.dataset(workspace_id, prompt_slug, name)

    async def update(
        self, workspace_id: str, prompt_slug: str, name: str, changes: Mapping[str, Any]
    ) -> Dataset:
        """Rename, or change the description or evaluators."""
        unknown = sorted(set(changes) - CHANGES)
        if unknown:
            raise ValidationFailed(f"cannot change {', '.join(unknown)} of a dataset")
        values = dict(changes)
        if "name" in values:
            check_dataset_name(values["name"])
        if "evaluators" in values:
            values["evaluators"] = list(check_evaluators(values["evaluators"]))
        if not isinstance(values.get("description", ""), str):
            raise ValidationFailed("description: expected a string")
        try:
            async with self.engine.begin() as conn:
                row = await require_dataset(conn, workspace_id, prompt_slug, name)
                renamed = values.get("name", name)
                if renamed != name and await dataset_row(conn, row.prompt_id, renamed) is not None:
                    raise _taken(prompt_slug, renamed)
                await conn.execute(
                    datasets.update().where(datasets.c.id == row.id).values(**values, updated_at=utcnow())
                )
        except IntegrityError as exc:
            raise _taken(prompt_slug, str(values.get("name"))) from exc
        return await self.dataset(workspace_id, prompt_slug, str(values.get("name", name)))

    async def rename(self, workspace_id: str, prompt_slug: str, name: str, new_name: str) -> Dataset:
        return await self.update(workspace_id, prompt_slug, name, {"name": new_name})

    async def delete(self, workspace_id: str, prompt_slug: str, name: str) -> None:
        """The dataset and its cases."""
        async with self.engine.begin() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, name)
            await conn.execute(dataset_cases.delete().where(dataset_cases.c.dataset_id == row.id))
            await conn.execute(datasets.delete().where(datasets.c.id == row.id))

    # ── cases ────────────────────────────────────────────────────────────────

    async def cases(self, workspace_id: str, prompt_slug: str, dataset_name: str) -> list[DatasetCase]:
        """Every case of a dataset, in order (what an evaluation runs)."""
        async with self.engine.connect() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, dataset_name)
            return await cases_of(conn, row.id)

    async def case(self, workspace_id: str, prompt_slug: str, dataset_name: str, case_id: str) -> DatasetCase:
        async with self.engine.connect() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, dataset_name)
            return _case(await _require_case(conn, row.id, case_id))

    async def add_cases(
        self, workspace_id: str, prompt_slug: str, dataset_name: str, cases: Iterable[DatasetCase]
    ) -> list[DatasetCase]:
        """Append cases after the last one, all in one transaction; the stored cases (with ids)."""
        async with self.engine.begin() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, dataset_name)
            added = await insert_cases(conn, row.id, cases)
            await _touch(conn, row.id)
        return added

    async def replace_cases(
        self, workspace_id: str, prompt_slug: str, dataset_name: str, cases: Iterable[DatasetCase]
    ) -> list[DatasetCase]:
        """Make the dataset hold exactly these cases, in one transaction."""
        async with self.engine.begin() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, dataset_name)
            await conn.execute(dataset_cases.delete().where(dataset_cases.c.dataset_id == row.id))
            stored = await insert_cases(conn, row.id, cases)
            await _touch(conn, row.id)
        return stored

    async def edit_case(
        self, workspace_id: str, prompt_slug: str, dataset_name: str, case_id: str, case: DatasetCase
    ) -> DatasetCase:
        """Replace one case's content; it keeps its place, id and source run."""
        async with self.engine.begin() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, dataset_name)
            await _require_case(conn, row.id, case_id)
            await conn.execute(
                dataset_cases.update()
                .where(dataset_cases.c.id == case_id)
                .values(**{k: v for k, v in _case_values(case).items() if k != "source_run_id"})
            )
            await _touch(conn, row.id)
            return _case(await _require_case(conn, row.id, case_id))

    async def prompt_of_run(self, workspace_id: str, run: Mapping[str, Any]) -> str:
        """The slug of the prompt a logged run's version belongs to (its datasets are where
        the run can be added)."""
        if not run.get("version_id"):
            raise ValidationFailed(NO_VERSION)
        async with self.engine.connect() as conn:
            return await _prompt_of_version(conn, workspace_id, str(run["version_id"]))

    async def add_from_run(
        self,
        workspace_id: str,
        run: Mapping[str, Any],
        dataset_name: str,
        expected: str | None,
        *,
        create: bool = False,
    ) -> tuple[Dataset, DatasetCase]:
        """A case made of a logged run's inputs (its output kept as `expected` if the caller
        passes it), in a dataset of the prompt the run's version belongs to; `create` makes the
        dataset if the prompt has none of that name."""
        if not run.get("version_id"):
            raise ValidationFailed(NO_VERSION)
        case = DatasetCase(
            inputs=dict(run.get("inputs") or {}), expected=expected, source_run_id=str(run["id"])
        )
        async with self.engine.begin() as conn:
            slug = await _prompt_of_version(conn, workspace_id, str(run["version_id"]))
            prompt = await require_prompt(conn, workspace_id, slug)
            if create and await dataset_row(conn, prompt.id, dataset_name) is None:
                check_dataset_name(dataset_name)
                await insert_dataset(conn, workspace_id, prompt.id, dataset_name, "", ())
            row = await require_dataset(conn, workspace_id, slug, dataset_name)
            (added,) = await insert_cases(conn, row.id, [case])
            await _touch(conn, row.id)
        return await self.dataset(workspace_id, slug, dataset_name), added

    async def delete_case(self, workspace_id: str, prompt_slug: str, dataset_name: str, case_id: str) -> None:
        async with self.engine.begin() as conn:
            row = await require_dataset(conn, workspace_id, prompt_slug, dataset_name)
            await _require_case(conn, row.id, case_id)
            await conn.execute(dataset_cases.delete().where(dataset_cases.c.id == case_id))
            await _touch(conn, row.id)


# ── row-level helpers (an open connection; the caller's transaction) ─────────


async def dataset_row(conn: AsyncConnection, prompt_id: str, name: str) -> Any:
    query = sa.select(datasets).where(datasets.c.prompt_id == prompt_id, datasets.c.name == name)
    return (await conn.execute(query)).first()


async def require_dataset(conn: AsyncConnection, workspace_id: str, prompt_slug: str, name: str) -> Any:
    prompt = await require_prompt(conn, workspace_id, prompt_slug)
    row = await dataset_row(conn, prompt.id, name)
    if row is None:
        names = [d.name for d in await datasets_of_prompt(conn, prompt.id, prompt_slug)]
        known = f" (its datasets: {', '.join(names)})" if names else " (it has no datasets yet)"
        raise NotFound(f"prompt {prompt_slug!r} has no dataset {name!r}{known}", details={"datasets": names})
    return row


async def datasets_of_prompt(conn: AsyncConnection, prompt_id: str, prompt_slug: str) -> list[Dataset]:
    counts = (
        sa.select(dataset_cases.c.dataset_id, sa.func.count().label("n"))
        .group_by(dataset_cases.c.dataset_id)
        .subquery()
    )
    query = (
        sa.select(datasets, counts.c.n)
        .outerjoin(counts, counts.c.dataset_id == datasets.c.id)
        .where(datasets.c.prompt_id == prompt_id)
        .order_by(datasets.c.name)
    )
    return [_from_row(r, prompt_slug, r.n or 0) for r in await conn.execute(query)]


async def insert_dataset(
    conn: AsyncConnection,
    workspace_id: str,
    prompt_id: str,
    name: str,
    description: str,
    evaluators: Iterable[Mapping[str, Any]],
) -> str:
    dataset_id, now = new_id(), utcnow()
    await conn.execute(
        datasets.insert().values(
            id=dataset_id,
            workspace_id=workspace_id,
            prompt_id=prompt_id,
            name=name,
            description=description,
            evaluators=[dict(e) for e in evaluators],
            created_at=now,
            updated_at=now,
        )
    )
    return dataset_id


async def insert_cases(
    conn: AsyncConnection, dataset_id: str, cases: Iterable[DatasetCase]
) -> list[DatasetCase]:
    """Append after the dataset's last case; the cases as stored, with their ids."""
    last = await conn.execute(
        sa.select(sa.func.max(dataset_cases.c.position)).where(dataset_cases.c.dataset_id == dataset_id)
    )
    start = (last.scalar_one_or_none() or 0) + 1
    now = utcnow()
    rows = [
        {"id": new_id(), "dataset_id": dataset_id, "position": start + i, "created_at": now}
        | _case_values(case)
        for i, case in enumerate(cases)
    ]
    if rows:
        await conn.execute(dataset_cases.insert(), rows)
    return [_case(r) for r in rows]


async def cases_of(conn: AsyncConnection, dataset_id: str) -> list[DatasetCase]:
    query = (
        sa.select(dataset_cases)
        .where(dataset_cases.c.dataset_id == dataset_id)
        .order_by(dataset_cases.c.position, dataset_cases.c.id)
    )
    return [_case(r._mapping) for r in await conn.execute(query)]


async def sync_dataset(
    conn: AsyncConnection,
    workspace_id: str,
    prompt_id: str,
    name: str,
    description: str,
    evaluators: Sequence[Mapping[str, Any]],
    cases: Sequence[DatasetCase],
) -> bool:
    """Make a dataset hold what a prompt file says (creating it if new); True if anything changed.
    Cases are compared by content, so an unchanged file leaves ids and times as they are."""
    row = await dataset_row(conn, prompt_id, name)
    if row is None:
        dataset_id = await insert_dataset(conn, workspace_id, prompt_id, name, description, evaluators)
        await insert_cases(conn, dataset_id, cases)
        return True
    changed = False
    wanted_evaluators = [dict(e) for e in evaluators]
    if row.description != description or list(row.evaluators or []) != wanted_evaluators:
        await conn.execute(
            datasets.update()
            .where(datasets.c.id == row.id)
            .values(description=description, evaluators=wanted_evaluators, updated_at=utcnow())
        )
        changed = True
    stored = await cases_of(conn, row.id)
    if [case_data(c) for c in stored] != [case_data(c) for c in cases]:
        await conn.execute(dataset_cases.delete().where(dataset_cases.c.dataset_id == row.id))
        await insert_cases(conn, row.id, cases)
        await _touch(conn, row.id)
        changed = True
    return changed


async def _prompt_of_version(conn: AsyncConnection, workspace_id: str, version_id: str) -> str:
    query = (
        sa.select(prompts.c.slug)
        .join(prompt_versions, prompt_versions.c.prompt_id == prompts.c.id)
        .where(prompt_versions.c.id == version_id, prompts.c.workspace_id == workspace_id)
    )
    slug = (await conn.execute(query)).scalar_one_or_none()
    if slug is None:
        raise NotFound("the prompt this run's version belongs to is gone")
    return str(slug)


async def _dataset(conn: AsyncConnection, row: Any, prompt_slug: str) -> Dataset:
    count = await conn.execute(
        sa.select(sa.func.count()).select_from(dataset_cases).where(dataset_cases.c.dataset_id == row.id)
    )
    return _from_row(row, prompt_slug, int(count.scalar_one()))


async def _require_case(conn: AsyncConnection, dataset_id: str, case_id: str) -> Any:
    query = sa.select(dataset_cases).where(
        dataset_cases.c.dataset_id == dataset_id, dataset_cases.c.id == case_id
    )
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no case {case_id!r} in this dataset")
    return row._mapping


async def _touch(conn: AsyncConnection, dataset_id: str) -> None:
    await conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(updated_at=utcnow()))


def _case_values(case: DatasetCase) -> dict[str, Any]:
    return {
        "inputs": dict(case.inputs),
        "expected": case.expected,
        "chat_history": [dict(m) for m in case.chat_history],
        "tags": list(case.tags),
        "source_run_id": case.source_run_id,
    }


def _case(row: Any) -> DatasetCase:
    return DatasetCase(
        inputs=dict(row["inputs"] or {}),
        expected=row["expected"],
        chat_history=tuple(row["chat_history"] or ()),
        tags=tuple(row["tags"] or ()),
        id=row["id"],
        source_run_id=row["source_run_id"],
    )


def _from_row(row: Any, prompt_slug: str, case_count: int) -> Dataset:
    return Dataset(
        id=row.id,
        prompt=prompt_slug,
        name=row.name,
        description=row.description,
        evaluators=tuple(row.evaluators or ()),
        case_count=case_count,
    )


def _taken(prompt_slug: str, name: str) -> Conflict:
    return Conflict(f"prompt {prompt_slug!r} already has a dataset {name!r}")
