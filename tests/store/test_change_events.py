"""Change events: every store write the hot path caches depends on publishes one, and the
engine's caches (subscribed in `services.py`) see the write at once, not after their TTL.
Also migration 0011, which moves `follows_latest` out of the variant config JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.config import Settings
from promptdeck.domain.change_events import CatalogChanged, ChangeEvent, ChangeFeed, ProviderSettingsChanged
from promptdeck.domain.prices import PriceOverride
from promptdeck.domain.promptfile import load_prompt_file
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.services import Services
from promptdeck.store.access import AccessStore
from promptdeck.store.database import MIGRATIONS, create_engine, normalize_url
from promptdeck.store.tables import deployments, prompt_versions, prompts, variants
from promptdeck.store.workspace_archive import WorkspaceArchive

DOCUMENT = """
prompt: greet
model: local/smollm2-135m-instruct
messages:
  - {role: user, content: "Say hello to {{name}}"}
inputs:
  name: {type: string, required: true}
deploy:
  greet: {default: latest, pinned: 1}
"""


class Deck:
    """A server's services (never started: no writer, no listener) with a recorded feed."""

    def __init__(self, services: Services, workspace_id: str) -> None:
        self.services = services
        self.workspace_id = workspace_id
        self.events: list[ChangeEvent] = []
        services.changes.subscribe(self.events.append)

    async def cached(self, name: str) -> Any:
        return await self.services.engine.deployments.get((self.workspace_id, name))

    def published(self) -> list[ChangeEvent]:
        events, self.events[:] = list(self.events), []
        return events


@pytest_asyncio.fixture(loop_scope="session")
async def deck(engine: AsyncEngine, database_url: str, tmp_path: Path) -> AsyncIterator[Deck]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, cache_ttl_seconds=3600)
    services = Services.build(settings)
    workspace_id = await AccessStore(engine).first_workspace()
    yield Deck(services, workspace_id)
    await services.db.dispose()


async def test_every_catalog_write_publishes_and_the_engine_sees_it_at_once(deck: Deck) -> None:
    catalog, ws = deck.services.catalog, deck.workspace_id
    changed = [CatalogChanged(ws)]
    assert await deck.cached("greet") is None  # an unknown name, cached as unknown
    report = await catalog.sync.push(ws, load_prompt_file(DOCUMENT), actor="tests")
    assert report.changed and deck.published() == changed
    served = await deck.cached("greet")
    assert served is not None and served.variants["pinned"].number == 1

    await catalog.sync.push(ws, load_prompt_file(DOCUMENT), actor="tests")  # nothing changes
    assert deck.published() == []
    # following `latest` is an explicit choice (a file's `latest` pins): made with a move
    await catalog.deployments.move_variant(ws, "greet", "default", "latest", actor="tests")
    assert deck.published() == changed

    raw = {"model": "local/smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi {{name}}"}]}
    await catalog.prompts.create_version(ws, "greet", raw, author="tests")
    assert deck.published() == changed
    served = await deck.cached("greet")
    assert served.variants["default"].number == 2  # it follows `latest`
    assert served.variants["pinned"].number == 1 and served.newest.number == 2
    assert served.follows_latest("default") and not served.follows_latest("pinned")

    await catalog.deployments.move_variant(ws, "greet", "pinned", 2, actor="tests")
    assert deck.published() == changed
    assert (await deck.cached("greet")).variants["pinned"].number == 2

    await catalog.deployments.rollback(ws, "greet", "pinned", actor="tests")
    assert deck.published() == changed
    assert (await deck.cached("greet")).variants["pinned"].number == 1

    await catalog.deployments.set_variant_config(ws, "greet", "pinned", {"retries": {"max_attempts": 3}})
    assert deck.published() == changed
    assert (await deck.cached("greet")).config("pinned").max_attempts == 3

    assert await deck.cached("other") is None
    await catalog.deployments.create_deployment(ws, "other", "greet", {"default": 1}, actor="tests")
    assert deck.published() == changed
    assert (await deck.cached("other")).variants["default"].number == 1

    elsewhere = await AccessStore(deck.services.db).create_workspace("elsewhere")
    archive = WorkspaceArchive(catalog)
    packed = await archive.export_archive(ws)
    await archive.import_archive(elsewhere, packed, actor="tests")
    assert deck.published() == [CatalogChanged(elsewhere)]
    imported = await deck.services.engine.deployments.get((elsewhere, "greet"))
    assert imported is not None and imported.follows_latest("default")
    assert not imported.follows_latest("pinned")
    assert await archive.export(elsewhere) == await archive.export(ws)  # the archive round-trips


async def test_provider_settings_writes_publish_and_the_engine_forgets_them(deck: Deck) -> None:
    app, ws = deck.services, deck.workspace_id
    changed = [ProviderSettingsChanged(ws)]
    assert await app.engine.credentials.get((ws, "openai")) is None
    await app.credentials.put(ws, "openai", "sk-test", None)
    assert deck.published() == changed
    assert (await app.engine.credentials.get((ws, "openai"))).api_key == "sk-test"
    await app.credentials.delete(ws, "openai")
    assert deck.published() == changed
    assert await app.engine.credentials.get((ws, "openai")) is None

    assert await app.engine.overrides.get(ws) == {}
    await app.prices.put(ws, "local/tiny", PriceOverride(input_per_mtok=1.0, output_per_mtok=2.0))
    assert deck.published() == changed
    assert set(await app.engine.overrides.get(ws)) == {"local/tiny"}
    await app.prices.delete(ws, "local/tiny")
    assert deck.published() == changed
    assert await app.engine.overrides.get(ws) == {}


def test_a_failing_subscriber_does_not_keep_the_others_stale() -> None:
    feed, seen = ChangeFeed(), []

    def broken(event: ChangeEvent) -> None:
        raise RuntimeError("broken cache")

    feed.subscribe(broken)
    feed.subscribe(seen.append)
    feed.publish(CatalogChanged("w"))
    assert seen == [CatalogChanged("w")]


# ── migration 0011 ───────────────────────────────────────────────────────────


def upgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = normalize_url(url)
    command.upgrade(config, revision)


async def test_migration_0011_moves_follows_latest_out_of_the_config(database_url: str) -> None:
    """Run on a database of 0010's schema (not the `engine` fixture's, migrated to the newest)."""
    await asyncio.to_thread(upgrade, database_url, "0010")
    db = create_engine(database_url)
    try:
        workspace_id = await AccessStore(db).first_workspace()
        now = utcnow()
        prompt_id, version_id, deployment_id = new_id(), new_id(), new_id()
        configs = {
            "follows": {"follows_latest": True},
            "both": {"retries": {"max_attempts": 3}, "follows_latest": True},
            "pinned": {"retries": {"max_attempts": 2}, "follows_latest": False},
            "plain": None,
        }
        async with db.begin() as conn:
            await conn.execute(
                prompts.insert().values(
                    id=prompt_id,
                    workspace_id=workspace_id,
                    slug="p",
                    name="p",
                    description="",
                    created_at=now,
                )
            )
            await conn.execute(
                prompt_versions.insert().values(
                    id=version_id,
                    prompt_id=prompt_id,
                    number=1,
                    model="local/m",
                    messages=[{"role": "user", "content": "hi"}],
                    params={},
                    inputs={},
                    content_hash="x",
                    note="",
                    author="",
                    created_at=now,
                )
            )
            await conn.execute(
                deployments.insert().values(
                    id=deployment_id,
                    workspace_id=workspace_id,
                    name="d",
                    prompt_id=prompt_id,
                    default_variant="follows",
                    created_at=now,
                )
            )
            for name, config in configs.items():
                await conn.execute(
                    variants.insert().values(
                        id=new_id(),
                        deployment_id=deployment_id,
                        name=name,
                        version_id=version_id,
                        updated_at=now,
                        config=config,
                    )
                )
        await asyncio.to_thread(upgrade, database_url, "0011")
        async with db.connect() as conn:
            rows = {
                r.name: (r.follows_latest, r.config)
                for r in await conn.execute(
                    sa.select(variants.c.name, variants.c.follows_latest, variants.c.config)
                )
            }
    finally:
        await db.dispose()
    assert rows == {
        "follows": (True, None),
        "both": (True, {"retries": {"max_attempts": 3}}),
        "pinned": (False, {"retries": {"max_attempts": 2}}),
        "plain": (False, None),
    }
