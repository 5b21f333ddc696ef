"""A JSON column's value orjson cannot write does not cost its row, on SQLite and PostgreSQL:
the run is logged, and what JSON cannot hold is stored as a marker saying why. (Requests are
refused such values at the door, tests/test_hostile_input_bounds.py; this is the run log's own
guarantee, whatever a future caller hands it.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.runs import new_id
from promptdeck.store.database import NOT_STORED, STORED_DEPTH_MAX, storable, to_json
from promptdeck.store.tables import runs
from tests.support.run_records import usage_run, write_runs

AT = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def depth(value: Any) -> int:
    found = 0
    while isinstance(value, list | dict):
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
        found += 1
    return found


async def test_a_run_with_unwritable_inputs_is_stored_with_markers(engine: AsyncEngine) -> None:
    workspace_id = new_id()
    record = usage_run(workspace_id, created_at=AT)
    record.inputs = {
        "deep": nested(300),  # orjson writes 254 levels at most
        "huge": 10**30,  # past 64 bits
        "lone": "a\ud800b",  # a lone surrogate: no UTF-8 for it
        "keys": {1: "one"},  # a key that is not a string
        "set": {"a"},
        "fine": {"text": "kept as it was", "n": [1, 2.5, None, True]},
    }
    ordinary = usage_run(workspace_id, created_at=AT)
    writer = await write_runs(engine, [record, ordinary])
    assert (writer.metrics.written, writer.metrics.failed) == (2, 0)
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(runs.c.inputs).where(runs.c.id == record.id))).scalar_one()
    assert stored["fine"] == {"text": "kept as it was", "n": [1, 2.5, None, True]}
    assert stored["huge"] == 1e30 and stored["lone"] == "a\ufffdb" and stored["keys"] == {"1": "one"}
    assert stored["set"] == {NOT_STORED: "a set value JSON cannot hold"}
    kept = stored["deep"]
    assert depth(kept) == STORED_DEPTH_MAX  # the marker's object included
    while isinstance(kept, list):
        kept = kept[0]
    assert kept == {NOT_STORED: f"nested deeper than {STORED_DEPTH_MAX} levels"}


def test_what_orjson_writes_is_written_unchanged() -> None:
    value = {"a": [1, {"b": None}], "t": "ünïcode 🙂", "n": 2**63}
    assert to_json(value) == '{"a":[1,{"b":null}],"t":"ünïcode 🙂","n":9223372036854775808}'
    assert storable(value) == value
