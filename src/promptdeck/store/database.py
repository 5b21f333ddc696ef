"""Engine creation (SQLite in WAL mode, or PostgreSQL) and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# SQLite: pages the write-ahead log may hold before a commit copies it into the database (the
# default is 1,000). The server copies it sooner, off the writer's path (store/wal_checkpoints.py);
# this is the fallback, well above what one of the run writer's largest batches writes (5,000
# runs: about 50,000 pages at a million runs). At 10,000 nearly every such commit copied the log
# itself and the writer took 11 % fewer runs/s (docs/performance.md). The log may reach ~800 MB.
AUTOCHECKPOINT_PAGES = 200_000
_JSON: dict[str, Any] = {
    "json_serializer": lambda value: orjson.dumps(value).decode(),
    "json_deserializer": orjson.loads,
}


def normalize_url(url: str) -> str:
    """Accept plain `sqlite:///` and `postgresql://` URLs and pick the async drivers."""
    parsed = make_url(url)
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> str | None:
    """The SQLite database's file, or None (PostgreSQL, or SQLite in memory)."""
    if not is_sqlite(url):
        return None
    database = make_url(normalize_url(url)).database
    return database if database and database != ":memory:" else None


def create_engine(url: str) -> AsyncEngine:
    url = normalize_url(url)
    if is_sqlite(url):
        database = sqlite_file(url)
        if database is not None:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **_JSON)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **_JSON)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


async def set_locally(conn: AsyncConnection, **settings: str) -> None:
    """PostgreSQL settings for the rest of this transaction only (planner settings of a query)."""
    await conn.execute(sa.select(*(sa.func.set_config(k, v, True) for k, v in settings.items())))


def migrate(url: str) -> None:
    """Bring the database to the newest schema. Synchronous: call it before the loop runs,
    or through `asyncio.to_thread`."""
    url = normalize_url(url)
    database = sqlite_file(url)
    if database is not None:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
