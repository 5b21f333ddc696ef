"""What `GET /api/runs` (and its export) can ask for: filters, metadata conditions and a sort.
Parsed from query parameters here, checked all at once; every problem names its parameter."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from promptdeck.domain.errors import ValidationFailed

Sort = Literal["time", "latency", "cost", "tokens"]
Order = Literal["desc", "asc"]
SORTS: tuple[str, ...] = ("time", "latency", "cost", "tokens")
ORDERS: tuple[str, ...] = ("desc", "asc")
STATUSES: tuple[str, ...] = ("success", "error")
VERSION_NUMBER_MAX = 2**31 - 1
"""The largest version number: what the versions' number column holds (a 32-bit integer on
PostgreSQL). A larger number names no version, and would overflow the database driver."""


@dataclass(frozen=True)
class MetaCondition:
    """`key:value` (equals), `key` (exists), `key>n` / `key<n` (numeric, strict)."""

    key: str
    op: Literal["eq", "exists", "gt", "lt"]
    text: str | None = None
    number: float | None = None


@dataclass(frozen=True)
class RunFilters:
    deployment: str | None = None
    variant: str | None = None
    version: int | None = None
    model: str | None = None
    provider: str | None = None
    status: str | None = None
    user: str | None = None
    session: str | None = None  # the runs' session id (domain/run_sessions.py)
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    meta: tuple[MetaCondition, ...] = field(default_factory=tuple)


def parse_meta(condition: str) -> MetaCondition:
    """One `meta=` condition. The first of `:`, `>`, `<` splits key from value."""
    positions = [(condition.find(sep), sep) for sep in (":", ">", "<") if sep in condition]
    if not positions:
        if not condition.strip():
            raise ValueError("expected key, key:value, key>number or key<number")
        return MetaCondition(condition, "exists")
    at, sep = min(positions)
    key, value = condition[:at], condition[at + 1 :]
    if not key:
        raise ValueError(f"no key before {sep!r} in {condition!r}")
    if sep == ":":
        return MetaCondition(key, "eq", text=value)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{key}{sep} needs a number; got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key}{sep} needs a finite number; got {value!r}")
    return MetaCondition(key, "gt" if sep == ">" else "lt", number=number)


class TimeOutOfRange(ValueError):
    """A well-formed time that is not in years 1 to 9999 once moved to UTC."""


def parse_time(value: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC. A trailing `Z` is accepted."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    if not when.tzinfo:
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00, in year 0 in UTC
        raise TimeOutOfRange(f"{value!r} is outside years 1 to 9999 in UTC") from None


def parse_time_params(given: dict[str, str | None], problems: list[str]) -> dict[str, datetime | None]:
    """Each named time parameter (`parse_time`), None where it is absent. A bad one is added to
    `problems` under its name instead of raising, so a query reports all its problems at once."""
    times: dict[str, datetime | None] = dict.fromkeys(given)
    for name, text in given.items():
        if text is not None:
            try:
                times[name] = parse_time(text)
            except TimeOutOfRange as exc:
                problems.append(f"{name}: {exc}")
            except ValueError:
                problems.append(f"{name}: expected an ISO 8601 time, e.g. 2026-01-31T12:00:00Z; got {text!r}")
    return times


def parse_filters(
    *,
    deployment: str | None = None,
    variant: str | None = None,
    version: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    user: str | None = None,
    session: str | None = None,
    since: str | None = None,
    until: str | None = None,
    q: str | None = None,
    meta: list[str] | None = None,
) -> RunFilters:
    problems: list[str] = []
    number: int | None = None
    if version is not None:
        try:
            number = int(version)
            if not 1 <= number <= VERSION_NUMBER_MAX:
                raise ValueError
        except ValueError:
            problems.append(
                f"version: expected a version number (1, 2, ... up to {VERSION_NUMBER_MAX}); got {version!r}"
            )
    if status is not None and status not in STATUSES:
        problems.append(f"status: expected one of {', '.join(STATUSES)}; got {status!r}")
    times = parse_time_params({"since": since, "until": until}, problems)
    conditions: list[MetaCondition] = []
    for given in meta or []:
        try:
            conditions.append(parse_meta(given))
        except ValueError as exc:
            problems.append(f"meta: {exc}")
    if q is not None and not q.strip():
        problems.append("q: expected some text to search for")
    if problems:
        raise ValidationFailed("invalid run filters: " + "; ".join(problems), details=problems)
    return RunFilters(
        deployment=deployment,
        variant=variant,
        version=number,
        model=model,
        provider=provider,
        status=status,
        user=user,
        session=session,
        since=times["since"],
        until=times["until"],
        q=q,
        meta=tuple(conditions),
    )


def check_sort(sort: str, order: str) -> tuple[Sort, Order]:
    problems = []
    if sort not in SORTS:
        problems.append(f"sort: expected one of {', '.join(SORTS)}; got {sort!r}")
    if order not in ORDERS:
        problems.append(f"order: expected one of {', '.join(ORDERS)}; got {order!r}")
    if problems:
        raise ValidationFailed("invalid run sort: " + "; ".join(problems), details=problems)
    return sort, order  # type: ignore[return-value]
