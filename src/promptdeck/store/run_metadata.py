"""A run's flat metadata as rows of `run_metadata`: one per key, its value as text and, when it
is a number (or a string that reads as one), as a number too — so both can be filtered on with
an index, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import math
from typing import Any

import orjson

from promptdeck.domain.runs import RunRecord

KEY_MAX = 200
TEXT_MAX = 256


def value_text(value: Any) -> str:
    """The text a value is filtered by: strings as they are, numbers in their shortest form
    (3.0 as "3"), booleans as "true"/"false", anything else as JSON. Cut to TEXT_MAX characters."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = orjson.dumps(value).decode()
    elif isinstance(value, int | float):
        text = _number_text(float(value)) if isinstance(value, float) else str(value)
    else:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text.replace("\x00", "")[:TEXT_MAX]  # PostgreSQL text cannot hold NUL


def value_num(value: Any) -> float | None:
    """The value as a number, when it is one: ints, floats and numeric strings; not booleans."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and 0 < len(value) <= 40:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def metadata_rows(record: RunRecord) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for key, value in (record.metadata or {}).items():
        name = str(key).replace("\x00", "")[:KEY_MAX]
        if not name or name in rows:
            continue
        rows[name] = {
            "run_id": record.id,
            "key": name,
            "workspace_id": record.workspace_id,
            "created_at": record.created_at,
            "value_text": value_text(value),
            "value_num": value_num(value),
        }
    return list(rows.values())
