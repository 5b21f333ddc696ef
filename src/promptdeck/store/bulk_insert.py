"""Many rows into one table in one statement, the way each database takes them fastest: the run
writer's statements (runs, their metadata, the usage rollups).

SQLAlchemy's per-row work (building and processing a parameter dict, about 5 µs a row) would be
a large part of writing a batch, so a statement is compiled once per database and table, and rows
go to the driver as tuples in the table's column order, through the columns' own bind processors.

* PostgreSQL: the rows travel as one array per column, `INSERT ... SELECT * FROM unnest($1::type[],
  ...)`, one execution for the whole batch instead of one per row; and `in_one` makes a batch's
  statements one (WITH clauses), one round trip.
* SQLite: the rows in one `VALUES (...), (...)` list (up to SQLite's limit on parameters), so the
  driver binds them at once and SQLite inserts them all in one step, without Python's GIL: with
  executemany, every row would take the GIL back from whatever else the process is doing.

With a `Merge`, a row whose primary key is already stored is merged into it instead:
`ON CONFLICT (primary key) DO UPDATE SET n = n + excluded.n, ...`. Rows must then have
distinct keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

Row = tuple[Any, ...]
Statement = tuple[str, Any]  # SQL for the driver, and its parameters
SQLITE_MAX_PARAMETERS = 32_766  # SQLite's limit on one statement's parameters (since 3.32)
_VALUES = re.compile(r" VALUES \((?:\?|\$1\b).*?\)(?= ON CONFLICT |$)")
_PARAMETER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Merge:
    """How a row whose primary key is already stored is merged into it: `adding` columns are
    summed, `earliest` and `latest` ones keep the earlier and the later value."""

    adding: tuple[str, ...]
    earliest: tuple[str, ...] = ()
    latest: tuple[str, ...] = ()

    def changes(self, table: sa.Table, insert: Any) -> dict[str, Any]:
        new = insert.excluded
        changes: dict[str, Any] = {name: table.c[name] + new[name] for name in self.adding}
        for name in self.earliest:
            changes[name] = sa.case((new[name] < table.c[name], new[name]), else_=table.c[name])
        for name in self.latest:
            changes[name] = sa.case((new[name] > table.c[name], new[name]), else_=table.c[name])
        return changes


@dataclass(frozen=True)
class BulkInsert:
    """A table's insert, compiled for one database: what comes before and after its rows."""

    head: str  # INSERT INTO table (columns)
    tail: str  # ON CONFLICT ..., or nothing
    types: tuple[str, ...]  # PostgreSQL: the columns' types, for the arrays
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column position, processor)
    key_columns: int  # the first columns, the primary key: few distinct values in a batch

    def statements(self, rows: Sequence[Row]) -> list[Statement]:
        converted = self._converted(rows)
        if self.types:
            arrays = ", ".join(f"${n}::{name}[]" for n, name in enumerate(self.types, 1))
            columns = tuple(list(column) for column in zip(*converted, strict=True))
            return [(f"{self.head} SELECT * FROM unnest({arrays}){self.tail}", columns)]
        width = len(converted[0])
        per_statement = SQLITE_MAX_PARAMETERS // width
        row = "(" + ", ".join("?" * width) + ")"
        return [
            (
                f"{self.head} VALUES {', '.join([row] * len(part))}{self.tail}",
                tuple(value for values in part for value in values),
            )
            for start in range(0, len(converted), per_statement)
            if (part := converted[start : start + per_statement])
        ]

    def _converted(self, rows: Sequence[Row]) -> list[Row]:
        if not self.processors:
            return list(rows)
        cached_keys: dict[tuple[int, Any], Any] = {}  # e.g. the batch's hours, converted once
        converted = []
        for row in rows:
            values = list(row)
            for position, process in self.processors:
                value = values[position]
                if position < self.key_columns:
                    key = (position, value)
                    if key not in cached_keys:
                        cached_keys[key] = process(value)
                    values[position] = cached_keys[key]
                else:
                    values[position] = process(value)
            converted.append(tuple(values))
        return converted


_COMPILED: dict[tuple[str, str, Merge | None], BulkInsert] = {}


def bulk_insert(dialect: Dialect, table: sa.Table, merge: Merge | None = None) -> BulkInsert:
    """The table's bulk insert for this database (compiled on first use)."""
    cache_key = (dialect.name, table.name, merge)
    cached = _COMPILED.get(cache_key)
    if cached is not None:
        return cached
    postgres = dialect.name == "postgresql"
    insert = postgresql.insert(table) if postgres else sqlite.insert(table)
    statement: Any = insert
    if merge is not None:
        statement = insert.on_conflict_do_update(
            index_elements=list(table.primary_key.columns), set_=merge.changes(table, insert)
        )
    columns = list(table.columns)
    compiled = statement.compile(dialect=dialect, column_keys=[c.key for c in columns])
    if list(compiled.positiontup or ()) != [c.key for c in columns]:
        raise RuntimeError(f"{table.name}: the insert's parameters are not in column order")
    values = _VALUES.search(compiled.string)
    if values is None:
        raise RuntimeError(f"{table.name}: no VALUES clause in {compiled.string}")
    processors = tuple(
        (position, process)
        for position, column in enumerate(columns)
        if (process := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    compiled_insert = BulkInsert(
        head=compiled.string[: values.start()],
        tail=compiled.string[values.end() :],
        types=tuple(c.type.compile(dialect) for c in columns) if postgres else (),
        processors=processors,
        key_columns=len(table.primary_key.columns) if merge else 0,
    )
    _COMPILED[cache_key] = compiled_insert
    return compiled_insert


def bound(
    dialect: Dialect, table: sa.Table, rows: Sequence[Row], merge: Merge | None = None
) -> list[Statement]:
    """The statements inserting rows given in the table's column order (with `merge`, merging
    them into the stored rows of the same keys), ready for the driver; none for no rows. Made
    apart from running them, so the run writer makes a batch's while the one before is written."""
    return bulk_insert(dialect, table, merge).statements(rows) if rows else []


def in_one(dialect: Dialect, statements: list[Statement]) -> list[Statement]:
    """PostgreSQL: the statements as one, each but the last a WITH clause, so the database takes
    them in one round trip and nothing waits for Python in between. Elsewhere, unchanged."""
    if dialect.name != "postgresql" or len(statements) < 2:
        return statements
    clauses: list[str] = []
    parameters: list[Any] = []
    for sql, arrays in statements:
        clauses.append(_renumbered(sql, len(parameters)))
        parameters += arrays
    with_clauses = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(clauses[:-1], 1))
    return [(f"WITH {with_clauses} {clauses[-1]}", tuple(parameters))]


def _renumbered(sql: str, offset: int) -> str:
    """$1, $2, ... as $(1 + offset), $(2 + offset), ..."""

    def shifted(found: re.Match[str]) -> str:
        return f"${int(found.group(1)) + offset}"

    return _PARAMETER.sub(shifted, sql)


async def execute(conn: AsyncConnection, statements: Iterable[Statement]) -> None:
    """Run statements in the connection's transaction."""
    for sql, parameters in statements:
        await conn.exec_driver_sql(sql, parameters)
