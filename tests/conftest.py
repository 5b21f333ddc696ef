"""Shared fixtures: each database the suite runs on, and a live server over it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.config import Settings
from promptdeck.domain.promptfile import load_prompt_file
from promptdeck.store.database import create_engine, migrate
from promptdeck.store.prompt_sync import PromptSync
from promptdeck.workspace_setup import bootstrap
from tests.support.live_server import LiveServer, start_server
from tests.support.postgres import PostgresServer, start_postgres

pytest_plugins = ("tests.support.gc_between_tests",)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

EXAMPLE = """
prompt: summarize
model: local/smollm2-135m-instruct
params: {temperature: 0.0, max_tokens: 24, seed: 7}
messages:
  - {role: system, content: "You summarize text in one sentence."}
  - {role: user, content: "Summarize: {{text}}"}
inputs:
  text: {type: string, required: true}
deploy:
  summarize: {default: latest, short: latest}
"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    if isinstance(server, str):
        if IN_CI:
            pytest.fail(f"CI must run the PostgreSQL tests: {server}")
        pytest.skip(server)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest_asyncio.fixture(loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database of each kind, migrated to the newest schema."""
    await asyncio.to_thread(migrate, database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@dataclass
class Deck:
    """A running server with a workspace, an admin key and the example deployment."""

    live: LiveServer
    admin_key: str
    workspace_id: str

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def services(self) -> Any:
        return self.live.services

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key or self.admin_key}"}, timeout=60
        )

    def flush(self) -> None:
        """Wait until the run writer has written every finished run."""
        self.live.call(self.services.writer.flush)

    def runs(self, limit: int = 200) -> list[dict[str, Any]]:
        self.flush()
        with self.client() as client:
            response = client.get("/api/runs", params={"limit": limit})
            response.raise_for_status()
            return list(response.json()["data"])


def seed(settings: Settings, document: str = EXAMPLE) -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        workspace_id, key = await bootstrap(settings)
        db = create_engine(settings.database_url)
        try:
            await PromptSync(db).push(workspace_id, load_prompt_file(document), actor="tests")
        finally:
            await db.dispose()
        return workspace_id, key

    return asyncio.run(go())


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(**({"data_dir": tmp_path, "database_url": database_url} | overrides))


@pytest.fixture
def deck(database_url: str, tmp_path: Path) -> Iterator[Deck]:
    settings = make_settings(database_url, tmp_path, writer_flush_seconds=0.05)
    workspace_id, key = seed(settings)
    live = start_server(settings)
    yield Deck(live, key, workspace_id)
    live.stop()


@pytest.fixture
def sqlite_deck(tmp_path: Path) -> Iterator[Deck]:
    """For tests whose subject does not depend on the database."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}", tmp_path, writer_flush_seconds=0.05
    )
    workspace_id, key = seed(settings)
    live = start_server(settings)
    yield Deck(live, key, workspace_id)
    live.stop()
