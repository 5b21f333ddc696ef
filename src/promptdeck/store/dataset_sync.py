"""Datasets in prompt files and workspace archives: the `datasets:` section `pull` writes and
`push` applies, and the `datasets` list of an archive (docs/evaluations.md). Each works in the
caller's transaction, so a push or an import with datasets is still all or nothing.

Both forms leave out what they have no datasets for, so files and archives of workspaces that
have none stay byte for byte what they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from promptdeck.domain.dataset_files import (
    case_data,
    case_problems,
    check_dataset_name,
    check_evaluators,
    checked_cases,
    section_entry,
)
from promptdeck.domain.errors import ValidationFailed
from promptdeck.store.datasets import cases_of, datasets_of_prompt, insert_cases, insert_dataset, sync_dataset

SECTION = "datasets"  # the prompt file's key, and the archive's


async def pulled_section(conn: AsyncConnection, prompt_id: str, slug: str) -> dict[str, Any] | None:
    """A prompt's datasets as its prompt file's `datasets:` (None: it has none)."""
    section = {}
    for dataset in await datasets_of_prompt(conn, prompt_id, slug):
        cases = await cases_of(conn, dataset.id)
        section[dataset.name] = section_entry(dataset.description, dataset.evaluators, cases)
    return section or None


async def push_section(
    conn: AsyncConnection, workspace_id: str, prompt_id: str, section: Mapping[str, Any] | None
) -> list[str]:
    """Apply a checked `datasets:` section: each dataset it names is created or made to hold
    exactly its cases (others are left alone). The names of the datasets that changed."""
    changed = []
    for name, body in (section or {}).items():
        cases = checked_cases(body.get("cases") or [], f"datasets.{name}.cases")
        evaluators = check_evaluators(body.get("evaluators"))
        description = str(body.get("description") or "")
        if await sync_dataset(conn, workspace_id, prompt_id, name, description, evaluators, cases):
            changed.append(name)
    return changed


async def exported(conn: AsyncConnection, prompts: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """The archive's `datasets`: every dataset of the given (prompt id, slug) pairs, with cases."""
    listed = []
    for prompt_id, slug in prompts:
        for dataset in await datasets_of_prompt(conn, prompt_id, slug):
            listed.append(
                {
                    "prompt": slug,
                    "name": dataset.name,
                    "description": dataset.description,
                    "evaluators": [dict(e) for e in dataset.evaluators],
                    "cases": [case_data(c) for c in await cases_of(conn, dataset.id)],
                }
            )
    return listed


def archive_problems(entries: Any, prompt_slugs: set[str]) -> list[str]:
    """Every problem of an archive's `datasets` (absent in archives made before datasets)."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        return ["datasets: expected a list"]
    problems: list[str] = []
    seen: set[tuple[Any, Any]] = set()
    for i, entry in enumerate(entries):
        where = f"datasets[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object")
            continue
        key = (entry.get("prompt"), entry.get("name"))
        if entry.get("prompt") not in prompt_slugs:
            prompt = entry.get("prompt")
            problems.append(f"{where}: belongs to prompt {prompt!r}, which the archive does not hold")
        if key in seen:
            problems.append(f"{where}: prompt {key[0]!r} has dataset {key[1]!r} twice")
        seen.add(key)
        for check, value in (
            (check_dataset_name, entry.get("name")),
            (check_evaluators, entry.get("evaluators")),
        ):
            try:
                check(value)
            except ValidationFailed as exc:
                problems.append(f"{where}: {exc.message}")
        if not isinstance(entry.get("description", ""), str):
            problems.append(f"{where}.description: must be text")
        cases = entry.get("cases", [])
        if not isinstance(cases, list):
            problems.append(f"{where}.cases: expected a list")
            continue
        for n, case in enumerate(cases):
            at = f"{where}.cases[{n}]"
            problems += [f"{at}.{f}: {p}" if f else f"{at}: {p}" for f, p in case_problems(case)]
    return problems


async def imported(
    conn: AsyncConnection, workspace_id: str, entries: Any, prompt_ids: Mapping[str, str]
) -> tuple[int, int]:
    """Recreate an archive's checked datasets; how many datasets and cases."""
    datasets = cases = 0
    for entry in entries or []:
        dataset_id = await insert_dataset(
            conn,
            workspace_id,
            prompt_ids[entry["prompt"]],
            entry["name"],
            str(entry.get("description") or ""),
            check_evaluators(entry.get("evaluators")),
        )
        cases += len(await insert_cases(conn, dataset_id, checked_cases(entry.get("cases") or [])))
        datasets += 1
    return datasets, cases
