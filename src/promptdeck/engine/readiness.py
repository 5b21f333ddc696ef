"""Whether this server can do its work right now: what `GET /readyz` answers a load balancer.

Ready means: the database answers `SELECT 1` within a short time, its schema is at the newest
migration this code knows (or a newer one: `migrations_check`), the run writer is taking runs
off its queue, and Redis (when configured) answers a PING. Liveness (`/healthz`) asks none of
this: a server whose database is down is alive, and restarting it would not help.

Probes come from every load balancer every few seconds and need no key, so one result is shared
by the probes of the next second, and concurrent probes wait for one check instead of each
opening connections. Details name what failed and the exception's type, never its message
(which may hold a host or user name).
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.store.database import MIGRATIONS
from promptdeck.store.run_writer import RunWriter

TIMEOUT_SECONDS = 2.0  # for each check
SHARED_FOR_SECONDS = 1.0  # a result serves the probes that follow within this time


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Readiness:
    def __init__(
        self,
        db: AsyncEngine,
        writer: RunWriter,
        redis_url: str = "",
        timeout: float = TIMEOUT_SECONDS,
        shared_for: float = SHARED_FOR_SECONDS,
    ) -> None:
        self.db, self.writer, self.redis_url = db, writer, redis_url
        self.timeout, self.shared_for = timeout, shared_for
        self._last: tuple[float, list[Check]] | None = None
        self._lock = asyncio.Lock()

    async def checks(self) -> list[Check]:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.shared_for:
                return self._last[1]
            found = [*await self._database(), self._writer()]
            if self.redis_url:
                found.append(await self._redis())
            self._last = (time.monotonic(), found)
            return found

    async def _database(self) -> list[Check]:
        """`database` (SELECT 1) and `migrations` (the schema's revision is this code's head)."""
        try:
            async with asyncio.timeout(self.timeout), self.db.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
                try:
                    rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                    current = {str(row[0]) for row in rows}
                except sa.exc.DBAPIError:
                    current = set()
        except Exception as exc:  # unreachable, refused, timed out: not ready, whatever the cause
            failed = f"no answer within {self.timeout:g} s ({type(exc).__name__})"
            return [Check("database", False, failed), Check("migrations", False, "database unreachable")]
        return [
            Check("database", True, "answers"),
            migrations_check(current, *await asyncio.to_thread(revisions)),
        ]

    def _writer(self) -> Check:
        if self.writer.alive:
            return Check("run_writer", True, f"running, {self.writer.snapshot().queued} run(s) queued")
        return Check("run_writer", False, "not running: runs are written one by one, in the callers' time")

    async def _redis(self) -> Check:
        from redis.asyncio import Redis  # only when Redis is configured: redis-py costs ~14 MB

        client = Redis.from_url(
            self.redis_url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout
        )
        try:
            async with asyncio.timeout(self.timeout):
                await client.ping()
        except Exception as exc:
            return Check("redis", False, f"no answer within {self.timeout:g} s ({type(exc).__name__})")
        finally:
            await client.aclose()
        return Check("redis", True, "answers")


def migrations_check(current: set[str], heads: frozenset[str], known: frozenset[str]) -> Check:
    """Ready at this code's head, and past it: a revision this code does not know was written
    by a newer version migrating during a rolling upgrade, and the replicas of the version
    before keep serving until they are replaced. Behind it, or never migrated: not ready."""
    at = ", ".join(sorted(current)) or "none"
    if current == heads:
        return Check("migrations", True, f"at {at}")
    if current and not current & known:
        return Check("migrations", True, f"at {at}, newer than this version's {', '.join(sorted(heads))}")
    return Check("migrations", False, f"at {at}, expected {', '.join(sorted(heads))}")


@functools.cache
def revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The newest revision(s) of the migrations shipped with this code, and all of them (read once)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())
