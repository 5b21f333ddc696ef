"""Alembic environment: runs migrations over the async engine for either database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from promptdeck.store.database import create_engine
from promptdeck.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _upgrade() -> None:
    engine = create_engine(context.config.attributes["database_url"])
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


asyncio.run(_upgrade())
