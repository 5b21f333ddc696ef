"""Streamed exports of the admin API (runs, the audit log): JSON Lines or CSV, one row at a
time, as a download named after what it holds and when it was made."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from pydantic_core import to_json, to_jsonable_python

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.runs import utcnow

FORMATS = ("jsonl", "csv")


def check_format(format: str) -> str:
    """Before any row is read: a bad format is the caller's 422, not a broken download."""
    if format not in FORMATS:
        raise ValidationFailed(f"format: expected jsonl or csv; got {format!r}")
    return format


def export_response(
    rows: AsyncIterator[dict[str, Any]], format: str, columns: Sequence[str], name: str
) -> StreamingResponse:
    """`rows` as a download `<name>-<UTC time>.<format>`; CSV has `columns`, in that order."""

    async def jsonl() -> AsyncIterator[bytes]:
        async for row in rows:
            yield to_json(row) + b"\n"  # times as the rest of the API writes them

    async def as_csv() -> AsyncIterator[bytes]:
        yield csv_line(list(columns))
        async for row in rows:
            yield csv_line([csv_cell(row.get(column)) for column in columns])

    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        jsonl() if format == "jsonl" else as_csv(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.{format}"'},
    )


def csv_cell(value: Any) -> Any:
    """A value as one CSV cell: nested values as JSON, times as the API writes them."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, datetime):
        return to_jsonable_python(value)
    return value


def csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()
