"""A prompt's datasets and cases in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.errors import Conflict, NotFound, ValidationFailed
from promptdeck.store.access import AccessStore
from promptdeck.store.datasets import DatasetStore, sync_dataset
from promptdeck.store.prompts import PromptStore, require_prompt


@pytest_asyncio.fixture(loop_scope="session")
async def store(engine: AsyncEngine) -> tuple[DatasetStore, str]:
    access = AccessStore(engine)
    workspace_id = await access.create_workspace("datasets")
    await PromptStore(engine).create_prompt(workspace_id, "summarize")
    return DatasetStore(engine), workspace_id


CASES = [
    DatasetCase({"text": "one"}, expected="1", tags=("smoke",)),
    DatasetCase({"text": "two"}, chat_history=({"role": "user", "content": "hi"},)),
    DatasetCase({"text": "three"}),
]


async def test_a_dataset_keeps_its_cases_in_order(store: tuple[DatasetStore, str]) -> None:
    datasets, ws = store
    created = await datasets.create(ws, "summarize", "smoke", "a few", [{"type": "exact_match"}])
    assert (created.prompt, created.name, created.case_count) == ("summarize", "smoke", 0)
    assert created.evaluators == ({"type": "exact_match"},)
    added = await datasets.add_cases(ws, "summarize", "smoke", CASES[:2])
    await datasets.add_cases(ws, "summarize", "smoke", CASES[2:])
    cases = await datasets.cases(ws, "summarize", "smoke")
    assert [c.inputs["text"] for c in cases] == ["one", "two", "three"]
    assert cases[0].id == added[0].id and cases[0].expected == "1" and cases[0].tags == ("smoke",)
    assert cases[1].chat_history == ({"role": "user", "content": "hi"},)
    assert (await datasets.dataset(ws, "summarize", "smoke")).case_count == 3
    assert [d.name for d in await datasets.of_prompt(ws, "summarize")] == ["smoke"]


async def test_cases_are_edited_deleted_and_replaced(store: tuple[DatasetStore, str]) -> None:
    datasets, ws = store
    await datasets.create(ws, "summarize", "edits")
    first, second = await datasets.add_cases(
        ws, "summarize", "edits", [replace(CASES[0], source_run_id="r" * 32), CASES[1]]
    )
    edited = await datasets.edit_case(ws, "summarize", "edits", first.id, DatasetCase({"text": "uno"}, "one"))
    assert edited.id == first.id and edited.inputs == {"text": "uno"} and edited.source_run_id == "r" * 32
    await datasets.delete_case(ws, "summarize", "edits", second.id)
    assert [c.id for c in await datasets.cases(ws, "summarize", "edits")] == [first.id]
    with pytest.raises(NotFound):
        await datasets.delete_case(ws, "summarize", "edits", second.id)
    replaced = await datasets.replace_cases(ws, "summarize", "edits", CASES)
    assert [c.id for c in await datasets.cases(ws, "summarize", "edits")] == [c.id for c in replaced]


async def test_names_are_unique_per_prompt_and_renames_keep_cases(store: tuple[DatasetStore, str]) -> None:
    datasets, ws = store
    await datasets.create(ws, "summarize", "a")
    await datasets.create(ws, "summarize", "b")
    await datasets.add_cases(ws, "summarize", "a", CASES)
    with pytest.raises(Conflict):
        await datasets.create(ws, "summarize", "a")
    with pytest.raises(Conflict):
        await datasets.rename(ws, "summarize", "a", "b")
    renamed = await datasets.rename(ws, "summarize", "a", "c")
    assert renamed.name == "c" and renamed.case_count == 3
    with pytest.raises(NotFound) as missing:
        await datasets.cases(ws, "summarize", "a")
    assert missing.value.details == {"datasets": ["b", "c"]}
    await datasets.delete(ws, "summarize", "c")
    assert [d.name for d in await datasets.of_prompt(ws, "summarize")] == ["b"]


async def test_bad_names_and_evaluators_are_refused(store: tuple[DatasetStore, str]) -> None:
    datasets, ws = store
    with pytest.raises(ValidationFailed):
        await datasets.create(ws, "summarize", "Not A Name")
    with pytest.raises(ValidationFailed, match="type"):
        await datasets.create(ws, "summarize", "x", evaluators=[{"threshold": 1}])
    with pytest.raises(NotFound):
        await datasets.create(ws, "no-such-prompt", "x")


async def test_another_workspace_sees_nothing(store: tuple[DatasetStore, str], engine: AsyncEngine) -> None:
    datasets, ws = store
    await datasets.create(ws, "summarize", "private")
    other = await AccessStore(engine).create_workspace("other")
    await PromptStore(engine).create_prompt(other, "summarize")
    assert await datasets.of_prompt(other, "summarize") == []
    with pytest.raises(NotFound):
        await datasets.cases(other, "summarize", "private")


async def test_syncing_the_same_content_changes_nothing(store: tuple[DatasetStore, str]) -> None:
    datasets, ws = store
    async with datasets.engine.begin() as conn:
        prompt = await require_prompt(conn, ws, "summarize")
        assert await sync_dataset(conn, ws, prompt.id, "synced", "d", [], CASES)
    ids = [c.id for c in await datasets.cases(ws, "summarize", "synced")]
    async with datasets.engine.begin() as conn:
        assert not await sync_dataset(conn, ws, prompt.id, "synced", "d", [], CASES)
    assert [c.id for c in await datasets.cases(ws, "summarize", "synced")] == ids
    async with datasets.engine.begin() as conn:
        assert await sync_dataset(conn, ws, prompt.id, "synced", "d", [], CASES[:1])
    assert len(await datasets.cases(ws, "summarize", "synced")) == 1
