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
  A batch is cut into chunks of a few fixed lengths (the most rows a statement takes, then powers
  of two), so a table has a dozen statement texts at most: the driver keeps the last 128 texts it
  met prepared, per connection (~90 bytes a parameter), and one text per batch length held
  ~200 MB (bench/soak_memory.py). A statement takes at most 256 rows: at SQLite's parameter
  limit (~1,000 runs a statement) the writer's texts held 20-30 MB under load, at 256 rows
  ~13 MB, for under 1 µs more CPU a run (bench/README.md, "Memory").
  (PostgreSQL's texts do not depend on the number of rows.)

With a `Merge`, a row whose primary key is already stored is merged into it instead:
`ON CONFLICT (primary key) DO UPDATE SET n = n + excluded.n, ...`. Rows must then have
distinct keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from promptdeck.store.database import without_nul

Row = tuple[Any, ...]
Statement = tuple[str, Any]  # SQL for the driver, and its parameters
SQLITE_MAX_PARAMETERS = 32_766  # SQLite's limit on one statement's parameters (since 3.32)
SQLITE_MOST_ROWS = 256  # rows in one statement at most: a prepared statement's memory grows with them
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
    texts: dict[int, str] = field(default_factory=dict, compare=False, repr=False)  # SQLite, by rows

    def statements(self, rows: Sequence[Row]) -> list[Statement]:
        return list(self.each_statement(self.converted(rows)))

    def each_statement(self, converted: Sequence[Row]) -> Iterator[Statement]:
        """The statements inserting rows already `converted`, one at a time: the run writer
        converts a batch a few runs at a time and makes its statements one by one, so that
        requests are served in between."""
        if self.types:
            arrays = ", ".join(f"${n}::{name}[]" for n, name in enumerate(self.types, 1))
            columns = tuple(list(column) for column in zip(*converted, strict=True))
            yield (f"{self.head} SELECT * FROM unnest({arrays}){self.tail}", columns)
            return
        width = len(converted[0])
        start = 0
        for length in chunk_lengths(len(converted), sqlite_rows_per_statement(width)):
            part = converted[start : start + length]
            start += length
            yield (self._sqlite_text(width, length), tuple(chain.from_iterable(part)))

    def _sqlite_text(self, width: int, rows: int) -> str:
        """The statement inserting `rows` rows, made once per length (a handful of lengths)."""
        text = self.texts.get(rows)
        if text is None:
            row = "(" + ", ".join("?" * width) + ")"
            text = self.texts[rows] = f"{self.head} VALUES {', '.join([row] * rows)}{self.tail}"
        return text

    def converted(self, rows: Iterable[Row]) -> list[Row]:
        """Rows as the driver takes them: each value through its column's bind processor (JSON
        encoding, times as text on SQLite): most of a batch's Python work."""
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


def sqlite_rows_per_statement(width: int) -> int:
    """The most rows of `width` columns one SQLite statement inserts."""
    return min(SQLITE_MOST_ROWS, SQLITE_MAX_PARAMETERS // width)


def chunk_lengths(rows: int, most: int) -> list[int]:
    """How many rows each statement of a batch takes: `most` while that many are left, then
    the remainder's binary digits, largest first (700 at most 300: 300, 300, 64, 32, 4). A
    table's statements then have at most 1 + ⌈log2(most)⌉ lengths, whatever the batch lengths."""
    lengths = [most] * (rows // most)
    rest = rows % most
    while rest:
        length = 1 << (rest.bit_length() - 1)
        lengths.append(length)
        rest -= length
    return lengths


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
        if (process := _processor(column, dialect)) is not None
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


def _processor(column: sa.Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column's bind processor; on PostgreSQL a text column's also turns NUL characters into
    U+FFFD first (its text holds none), so a run whose text has one is still written."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if dialect.name != "postgresql" or not isinstance(column.type, sa.String):
        return process
    if process is None:
        return _text_without_nul
    then = process
    return lambda value: then(_text_without_nul(value))


def _text_without_nul(value: Any) -> Any:
    return without_nul(value) if isinstance(value, str) else value


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
