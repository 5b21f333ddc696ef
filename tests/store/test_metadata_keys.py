"""`GET /api/runs/metadata-keys` as RunLog.metadata_keys reads it from the usage rollups, on
SQLite and PostgreSQL: runs go through the real run writer (which keeps the rollups), the
answer is read at a fixed `now`. The week starts at a whole UTC hour; examples are a key's
busiest values of the last day it was used; what the rollups leave out is not listed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import RunRecord, new_id
from promptdeck.domain.usage_dimensions import META_KEYS_PER_HOUR, META_TEXT_MAX
from promptdeck.store import run_log
from promptdeck.store.run_log import RunLog
from promptdeck.store.run_writer import RunWriter
from tests.support.run_records import usage_run, write_runs

NOW = datetime(2026, 3, 8, 12, 30, tzinfo=UTC)
WEEK_AGO = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the start of the hour NOW - 7 days is in


class Log:
    """A migrated database with a workspace's runs written by the run writer."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.workspace_id = new_id()

    async def write(self, *runs: tuple[datetime, dict[str, Any]]) -> None:
        """Runs at the given times with the given metadata."""
        records: list[RunRecord] = [
            usage_run(self.workspace_id, created_at=at, metadata=metadata) for at, metadata in runs
        ]
        await write_runs(self.engine, records)

    async def keys(self) -> dict[str, Any]:
        return await RunLog(self.engine).metadata_keys(self.workspace_id, now=NOW)


@pytest.fixture
def log(engine: AsyncEngine) -> Log:
    return Log(engine)


async def test_keys_of_the_week_by_runs_carrying_them(log: Log) -> None:
    recent = NOW - timedelta(minutes=10)
    await log.write(
        (recent, {"env": "prod", "customer": "acme"}),
        (recent, {"env": "prod", "n": 1}),
        (recent - timedelta(days=2), {"env": "dev"}),
        (WEEK_AGO + timedelta(minutes=10), {"edge": "x"}),  # in the window's first hour
        (WEEK_AGO - timedelta(minutes=10), {"old": "x"}),  # an hour before it
    )
    body = await log.keys()
    assert body["since"] == WEEK_AGO
    assert body["data"] == [  # most runs first, then by name
        {"key": "env", "count": 3, "examples": ["prod"]},  # dev: two days before env's last use
        {"key": "customer", "count": 1, "examples": ["acme"]},
        {"key": "edge", "count": 1, "examples": ["x"]},
        {"key": "n", "count": 1, "examples": ["1"]},
    ]


async def test_examples_are_the_busiest_values_of_the_last_day_a_key_was_used(log: Log) -> None:
    last_used = NOW - timedelta(days=3)
    tiers = ["gold"] * 3 + ["silver"] * 2 + ["d", "c", "bronze", "b", "a"]
    await log.write(
        *((last_used - timedelta(hours=i), {"tier": tier}) for i, tier in enumerate(tiers)),
        (last_used - timedelta(hours=23), {"tier": "b"}),  # in the day's first hour
        *((last_used - timedelta(hours=24), {"tier": "platinum"}) for _ in range(4)),  # an hour before
    )
    (tier,) = (await log.keys())["data"]
    assert tier["count"] == 15  # every run of the week
    assert tier["examples"] == ["gold", "b", "silver", "a", "bronze"]  # ties by value


async def test_what_the_rollups_leave_out_is_not_listed(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    long = "k" * (META_TEXT_MAX + 1)
    many = {f"key{i:02d}": "v" for i in range(META_KEYS_PER_HOUR + 2)}
    await log.write(
        (NOW, {long: "v", "note": "x" * (META_TEXT_MAX + 1)}),
        (NOW, {"note": "short"}),
        (NOW - timedelta(hours=1), many),
    )
    data = (await log.keys())["data"]
    keys = {k["key"]: k for k in data}
    assert long not in keys  # too long to roll up
    assert keys["note"] == {"key": "note", "count": 2, "examples": ["short"]}  # the long value counts
    # a writer rolls up META_KEYS_PER_HOUR keys per hour: the hour's next ones are not counted
    assert len([k for k in keys if k.startswith("key")]) == META_KEYS_PER_HOUR

    monkeypatch.setattr(run_log, "MAX_KEYS", 2)
    assert [k["key"] for k in (await log.keys())["data"]] == ["note", "key00"]


async def test_runs_still_queued_are_not_counted(log: Log) -> None:
    await log.write((NOW, {"env": "prod"}))
    writer = RunWriter(log.engine)  # not started: the run waits in its queue
    await writer.put(usage_run(log.workspace_id, created_at=NOW, metadata={"env": "dev"}))
    assert (await log.keys())["data"] == [{"key": "env", "count": 1, "examples": ["prod"]}]
