"""Datasets in prompt files (`pull` writes them, `push` applies them, an unchanged push changes
nothing) and in the workspace archive (`export`, `import`; an archive without datasets still
imports), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.prompt_sync import dump_prompt_file
from promptdeck.domain.promptfile import PromptFileError, load_prompt_file
from promptdeck.store.access import AccessStore
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.datasets import DatasetStore
from promptdeck.store.workspace_archive import WorkspaceArchive, pack

DOCUMENT = """
prompt: greet
model: local/smollm2-135m-instruct
messages:
  - {role: user, content: "Say hello to {{name}}"}
deploy:
  greet: {default: 1}
datasets:
  smoke:
    description: names we know
    evaluators:
      - {type: contains, value: hello}
    cases:
      - inputs: {name: Ada}
        expected: Hello Ada
        tags: [short]
      - inputs: {name: Grace}
        chat_history:
          - {role: user, content: hi}
"""


async def test_push_pull_push_with_datasets_changes_nothing(engine: AsyncEngine) -> None:
    access, catalog = AccessStore(engine), CatalogStore(engine)
    workspace = await access.create_workspace("as code")
    first = await catalog.sync.push(workspace, load_prompt_file(DOCUMENT), actor="tests")
    assert first.datasets == ["smoke"]
    datasets = DatasetStore(engine)
    cases = await datasets.cases(workspace, "greet", "smoke")
    assert [c.inputs for c in cases] == [{"name": "Ada"}, {"name": "Grace"}]
    assert (await datasets.dataset(workspace, "greet", "smoke")).evaluators == (
        {"type": "contains", "value": "hello"},
    )

    (pulled,) = await WorkspaceArchive(catalog).pull_documents(workspace)
    text = dump_prompt_file(pulled)
    assert "datasets:\n  smoke:\n    description: names we know\n" in text
    again = await catalog.sync.push(workspace, load_prompt_file(text), actor="tests")
    assert not again.changed and again.datasets == []
    assert [c.id for c in await datasets.cases(workspace, "greet", "smoke")] == [c.id for c in cases]
    (repulled,) = await WorkspaceArchive(catalog).pull_documents(workspace)
    assert dump_prompt_file(repulled) == text

    edited = text.replace("Hello Ada", "Hi Ada")
    dry = await catalog.sync.push(workspace, load_prompt_file(edited), actor="tests", dry_run=True)
    assert dry.datasets == ["smoke"]
    assert (await datasets.cases(workspace, "greet", "smoke"))[0].expected == "Hello Ada"
    assert (await catalog.sync.push(workspace, load_prompt_file(edited), actor="tests")).changed
    assert (await datasets.cases(workspace, "greet", "smoke"))[0].expected == "Hi Ada"


async def test_a_prompt_without_datasets_pulls_without_the_key(engine: AsyncEngine) -> None:
    access, catalog = AccessStore(engine), CatalogStore(engine)
    workspace = await access.create_workspace("plain")
    plain = DOCUMENT.split("datasets:")[0]
    await catalog.sync.push(workspace, load_prompt_file(plain), actor="tests")
    (pulled,) = await WorkspaceArchive(catalog).pull_documents(workspace)
    assert "datasets" not in pulled
    assert "datasets" not in await WorkspaceArchive(catalog).export(workspace)


def test_a_bad_datasets_section_is_reported_on_its_lines() -> None:
    bad = DOCUMENT.replace("inputs: {name: Ada}", "inputs: Ada").replace("tags: [short]", "tags: short")
    with pytest.raises(PromptFileError) as raised:
        load_prompt_file(bad, "greet.yaml")
    assert raised.value.details == [
        "greet.yaml:14: datasets.smoke.cases[0].inputs: must be an object",
        "greet.yaml:16: datasets.smoke.cases[0].tags: must be a list of strings",
    ]


async def test_datasets_travel_in_the_workspace_archive(engine: AsyncEngine) -> None:
    access, catalog = AccessStore(engine), CatalogStore(engine)
    source = await access.create_workspace("source")
    await catalog.sync.push(source, load_prompt_file(DOCUMENT), actor="tests")
    archive = WorkspaceArchive(catalog)
    exported = await archive.export(source)
    assert [(d["prompt"], d["name"], len(d["cases"])) for d in exported["datasets"]] == [
        ("greet", "smoke", 2)
    ]

    target = await access.create_workspace("target")
    counts = await archive.import_archive(target, pack(exported), actor="tests")
    assert counts["datasets"] == 1 and counts["cases"] == 2
    assert await archive.export(target) == exported

    old = {k: v for k, v in exported.items() if k != "datasets"}  # made before datasets existed
    older = await access.create_workspace("older")
    assert "datasets" not in await archive.import_archive(older, pack(old), actor="tests")
    assert await DatasetStore(engine).of_prompt(older, "greet") == []

    broken = exported | {"datasets": [{"prompt": "nope", "name": "x", "cases": [{"inputs": 1}]}]}
    with pytest.raises(ValidationFailed) as raised:
        await archive.import_archive(await access.create_workspace("broken"), pack(broken), actor="tests")
    assert raised.value.details == [
        "datasets[0]: belongs to prompt 'nope', which the archive does not hold",
        "datasets[0].cases[0].inputs: must be an object",
    ]
