"""`promptdeck quickstart` (what `make run` runs) seeds the example prompt only where it does not
exist: run again, it changes no prompt, version or variant. It used to re-push
`examples/summarize.yaml` on every start, undoing a user's rollback without a word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptdeck.config import Settings
from promptdeck.domain.promptfile import load_prompt_file
from promptdeck.store.access import AccessStore
from promptdeck.store.database import create_engine
from promptdeck.store.deployments import DeploymentStore
from promptdeck.store.prompt_sync import PromptSync
from promptdeck.store.prompts import PromptStore
from promptdeck.workspace_setup import seed_example

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "summarize.yaml"


async def state(settings: Settings, workspace_id: str) -> dict[str, Any]:
    db = create_engine(settings.database_url)
    try:
        deployment = await DeploymentStore(db).load_deployment(workspace_id, "summarize")
        return {
            "versions": [v.number for v in await PromptStore(db).list_versions(workspace_id, "summarize")],
            "serves": {name: version.number for name, version in deployment.variants.items()},
            "follows": sorted(deployment.following),
            "history": len(await DeploymentStore(db).history(workspace_id, "summarize", "default")),
        }
    finally:
        await db.dispose()


async def test_quickstart_twice_changes_nothing_a_user_changed(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    key, _, _, seeded = await seed_example(settings, EXAMPLE)
    assert seeded
    db = create_engine(database_url)
    try:
        workspace_id = await AccessStore(db).first_workspace()
        first = await state(settings, workspace_id)
        assert first == {"versions": [1], "serves": {"default": 1}, "follows": [], "history": 1}
        # The user saves v2 and deploys it, as a push with its own `deploy:` would.
        document = load_prompt_file(EXAMPLE.read_text(), str(EXAMPLE))
        document["messages"][0]["content"] = "You summarize text in two sentences."
        document["deploy"] = {"summarize": {"default": 2}}
        await PromptSync(db).push(workspace_id, document, actor="user")
    finally:
        await db.dispose()
    changed = await state(settings, workspace_id)
    assert changed["serves"] == {"default": 2}

    again_key, _, _, seeded_again = await seed_example(settings, EXAMPLE)
    assert not seeded_again and again_key == key  # the saved key, too, is kept
    assert await state(settings, workspace_id) == changed
