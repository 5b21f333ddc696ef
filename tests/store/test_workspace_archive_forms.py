"""An archive written before `follows_latest` had a column of its own (the flag inside each
variant's config JSON) imports as one written now does."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.promptfile import load_prompt_file
from promptdeck.store.access import AccessStore
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.workspace_archive import WorkspaceArchive, pack

DOCUMENT = """
prompt: greet
model: local/smollm2-135m-instruct
messages:
  - {role: user, content: "Say hello to {{name}}"}
deploy:
  greet: {default: latest, pinned: 1}
"""


async def test_an_archive_with_follows_latest_in_the_config_imports_the_same(engine: AsyncEngine) -> None:
    access, catalog = AccessStore(engine), CatalogStore(engine)
    source = await access.first_workspace()
    await catalog.sync.push(source, load_prompt_file(DOCUMENT), actor="tests")
    # following `latest` is an explicit choice (a file's `latest` pins): made with a move
    await catalog.deployments.move_variant(source, "greet", "default", "latest")
    archive = WorkspaceArchive(catalog)
    current = await archive.export(source)
    variants = current["deployments"][0]["variants"]
    assert (
        variants["default"]["follows_latest"] is True
        and "follows_latest" not in variants["default"]["config"]
    )
    old_form = {**current, "deployments": [{**d, "variants": {}} for d in current["deployments"]]}
    for name, target in variants.items():
        config = dict(target["config"]) | ({"follows_latest": True} if target["follows_latest"] else {})
        old_form["deployments"][0]["variants"][name] = {"version": target["version"], "config": config}
    target_workspace = await access.create_workspace("from an old archive")
    await archive.import_archive(target_workspace, pack(old_form), actor="tests")
    assert await archive.export(target_workspace) == current
    imported = await catalog.deployments.load_deployment(target_workspace, "greet")
    assert imported.follows_latest("default") and not imported.follows_latest("pinned")
