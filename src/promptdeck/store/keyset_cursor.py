"""Opaque keyset cursors: where a sorted page ended (the sort value and a unique tiebreaker),
so the next page starts after it however many rows arrive meanwhile. Shared by the run log
and the end users' list."""

from __future__ import annotations

import base64
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import orjson

from promptdeck.domain.errors import ValidationFailed

CURSOR_NUMBER_MAX = 2**63 - 1  # a sort value past the databases' 64-bit integers came from no page


def encode(sort: str, order: str, value: Any, last: str) -> str:
    """A cursor pointing after the row whose sort value is `value` and tiebreaker `last`."""
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    raw = orjson.dumps({"s": sort, "o": order, "v": value, "k": last})
    return base64.urlsafe_b64encode(raw).decode()


def decode(cursor: str, sort: str, order: str, sorts: Collection[str], time_sort: str) -> tuple[Any, str]:
    """The (sort value, tiebreaker) a cursor points after. It must come from this server and
    from the same sort and order; `time_sort` names the sort whose values are times."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        value, last = data["v"], data["k"]
        if not isinstance(last, str) or data["s"] not in sorts:
            raise ValueError
        if data["s"] == time_sort:
            value = datetime.fromisoformat(value)
        elif not isinstance(value, int | float) or isinstance(value, bool) or abs(value) > CURSOR_NUMBER_MAX:
            raise ValueError
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise ValidationFailed("cursor: not one this server gave out") from exc
    if (data["s"], data["o"]) != (sort, order):
        raise ValidationFailed(
            f"cursor: it continues sort={data['s']}&order={data['o']}, not sort={sort}&order={order}"
        )
    return value, last
