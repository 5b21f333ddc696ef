"""The catalog: its three stores (prompts and versions, deployments, prompt sync) over one database
engine and one change feed, so every catalog write publishes to the same subscribers.

Callers name the store they use: `catalog.prompts`, `catalog.deployments`, `catalog.sync`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.change_events import ChangeFeed
from promptdeck.store.deployments import DeploymentStore
from promptdeck.store.prompt_sync import PromptSync
from promptdeck.store.prompts import PromptStore


class CatalogStore:
    def __init__(self, engine: AsyncEngine, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.changes = changes or ChangeFeed()
        self.prompts = PromptStore(engine, self.changes)
        self.deployments = DeploymentStore(engine, self.changes)
        self.sync = PromptSync(engine, self.changes)
