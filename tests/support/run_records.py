"""Runs made by hand for the usage tests, as the engine would hand them to the run writer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord
from promptdeck.store.run_writer import RunWriter


def usage_run(workspace_id: str, created_at: datetime, **fields: Any) -> RunRecord:
    """A 100 ms success of deployment `alpha` (variant default, v1, openai/a) with no tokens,
    so a test names only the fields its sums depend on."""
    values: dict[str, Any] = {
        "workspace_id": workspace_id,
        "dialect": "fetchhive",
        "deployment": "alpha",
        "streamed": False,
        "variant": "default",
        "version_number": 1,
        "model": "openai/a",
        "provider": "openai",
        "duration_ms": 100.0,
        "created_at": created_at,
    }
    return RunRecord(**(values | fields))


async def write_runs(
    engine: AsyncEngine, records: list[RunRecord], writer: RunWriter | None = None
) -> RunWriter:
    """Runs through a real run writer (small, quick batches), all written when it returns."""
    writer = writer or RunWriter(engine, batch_size=50, flush_seconds=0.01)
    writer.start()
    for record in records:
        await writer.put(record)
    await writer.stop()
    return writer
