"""Engine creation (SQLite in WAL mode, or PostgreSQL) and migrations."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger("promptdeck.database")
MIGRATIONS = Path(__file__).parent / "migrations"
# SQLite: pages the write-ahead log may hold before a commit copies it into the database (the
# default is 1,000). The server copies it sooner, off the writer's path (store/wal_checkpoints.py);
# this is the fallback, well above what one of the run writer's largest batches writes (5,000
# runs: about 50,000 pages at a million runs). At 10,000 nearly every such commit copied the log
# itself and the writer took 11 % fewer runs/s (docs/performance.md). The log may reach ~800 MB.
AUTOCHECKPOINT_PAGES = 200_000
STORED_DEPTH_MAX = 200
"""Nesting kept of a value orjson cannot write whole: below its limit of 254 levels."""
NOT_STORED = "promptdeck_not_stored"  # the key of the marker left where a part was not stored
_SURROGATE = re.compile("[\ud800-\udfff]")


def to_json(value: Any) -> str:
    """A JSON column's value as text. What orjson cannot write (nesting past 254 levels, an
    integer past 64 bits, a lone surrogate, a key that is not a string) must not cost the row: a
    run is logged all the same, its unwritable parts replaced by `{NOT_STORED: why}`."""
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        log.warning("a value was stored with parts marked %r: %s", NOT_STORED, exc)
        text = orjson.dumps(storable(value)).decode()
    # PostgreSQL's jsonb holds no NUL character (\u0000): it becomes U+FFFD, on every database.
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def without_nul(text: str) -> str:
    """`text` with each NUL character as U+FFFD: PostgreSQL's text columns cannot hold one."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def holds_nul(exc: BaseException) -> bool:
    """Whether the database refused a statement for a NUL character in a text or JSON value
    (PostgreSQL's SQLSTATE 22021 and 22P05; SQLite stores them)."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in ("22021", "22P05")


_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")  # an escaped NUL, not an escaped backslash's "u0000"


def storable(value: Any, depth: int = 0) -> Any:
    """`value` with what JSON cannot hold made into what it can: keys as strings, lone
    surrogates as U+FFFD, huge integers as floats; the rest, and anything nested past
    STORED_DEPTH_MAX, as a marker saying why."""
    if depth >= STORED_DEPTH_MAX:
        return {NOT_STORED: f"nested deeper than {STORED_DEPTH_MAX} levels"}
    if isinstance(value, dict):
        return {_text(str(k)): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value]
    if isinstance(value, str):
        return _text(value)
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        if isinstance(value, int) and not isinstance(value, bool):
            with contextlib.suppress(OverflowError):
                return float(value)
        return {NOT_STORED: f"a {type(value).__name__} value JSON cannot hold"}
    return value


def _text(text: str) -> str:
    """`text` without lone surrogates (UTF-8 has none), each replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


_JSON: dict[str, Any] = {"json_serializer": to_json, "json_deserializer": orjson.loads}


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


def create_private_file(path: Path) -> None:
    """Create `path` (if new) readable by its owner only, and its directory (if new) open to the
    owner only: the database holds prompts, runs and hashed keys. SQLite gives the -wal and -shm
    files it creates beside a database the database file's own mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def create_engine(url: str) -> AsyncEngine:
    url = normalize_url(url)
    if is_sqlite(url):
        database = sqlite_file(url)
        if database is not None:
            create_private_file(Path(database))
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


def migrate_apart(url: str) -> None:
    """`migrate` in a child process, for the server: alembic and the migration scripts (~9 MB,
    bench/README.md "Memory") then never enter its memory, nor that of the workers it forks.
    The URL goes on stdin (it may hold a password: never on a command line)."""
    child = "import sys; from promptdeck.store.database import migrate; migrate(sys.stdin.read())"
    # Its errors go to our stderr.
    done = subprocess.run([sys.executable, "-c", child], input=url, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"migrating the database failed (status {done.returncode}): see above")


def migrate(url: str) -> None:
    """Bring the database to the newest schema. Synchronous: call it before the loop runs,
    or through `asyncio.to_thread`."""
    from alembic import command  # only while migrating: ~8 MB the server's hot path never needs
    from alembic.config import Config

    url = normalize_url(url)
    database = sqlite_file(url)
    if database is not None:
        create_private_file(Path(database))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
