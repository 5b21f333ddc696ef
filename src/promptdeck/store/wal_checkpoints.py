"""SQLite only: the write-ahead log copied into the database from a thread of its own.

In WAL mode a commit appends the pages it changed to the log, and by default the committing
connection then copies the log into the database whenever it holds 1,000 pages: for the run
writer at load that is nearly every commit, and the copying was half of its time
(docs/performance.md). The server's connections let the log grow to AUTOCHECKPOINT_PAGES
instead (store/database.py), and this checkpointer copies it every half second in a worker
thread: SQLite checkpoints without holding Python's GIL, so on another core. A passive
checkpoint waits for nobody and blocks nobody; should it fall behind, the committing connection
checkpoints at AUTOCHECKPOINT_PAGES as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

log = logging.getLogger("promptdeck.store")

EVERY_SECONDS = 0.5


class WalCheckpointer:
    def __init__(self, database_path: str, every_seconds: float = EVERY_SECONDS) -> None:
        self.database_path = database_path
        self.every_seconds = every_seconds
        self.checkpoints = 0
        self._connection: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wal-checkpointer")

    async def stop(self) -> None:
        """Stop after the checkpoint under way, if any (its thread cannot be interrupted)."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.checkpoint)
            except sqlite3.Error as exc:  # e.g. the database is busy: the next round catches up
                log.warning("WAL checkpoint failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every_seconds)

    def checkpoint(self) -> tuple[int, int, int]:
        """One passive checkpoint: (busy, pages in the log, pages copied), as SQLite says."""
        if self._connection is None:
            self._connection = sqlite3.connect(self.database_path, timeout=5, check_same_thread=False)
        busy, logged, copied = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        return busy, logged, copied
