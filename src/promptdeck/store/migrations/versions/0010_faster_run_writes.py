"""faster run writes: lz4 compression, external ids indexed only where there is one

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 10:40:00.000000

Two changes that make writing a run cheaper (docs/performance.md):

* `uq_runs_workspace_external_id` holds only the runs that have an external id (Vellum's, a few
  runs at most) instead of an entry for every run: a partial unique index. Runs without one never
  collided (NULLs are distinct), so what is unique is unchanged. Rebuilding it blocks writes to
  `runs` for a few seconds on a million runs (the run writer's queue holds the runs meanwhile).
* PostgreSQL: a run's inputs, rendered messages and output are a few KiB: PostgreSQL compresses values that
long before storing them, by default with pglz, which was a fifth of the database's work per run
written (docs/performance.md). lz4 compresses several times faster for a little less
compression. Only values written from now on are affected (nothing is rewritten), and only
where the server was built with lz4 (Debian's and the official images are); SQLite does not
compress and is left alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

EXTERNAL_IDS = "uq_runs_workspace_external_id"
HAS_EXTERNAL_ID = sa.text("external_id IS NOT NULL")

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LONG_COLUMNS = (
    "inputs",
    "messages",
    "output",
    "reasoning",
    "tool_calls",
    "attempts",
    "metadata",
    "error_message",
)


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    methods = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    if method not in (methods or ()):
        return
    changes = ", ".join(f'ALTER COLUMN "{name}" SET COMPRESSION {method}' for name in LONG_COLUMNS)
    op.execute(f"ALTER TABLE runs {changes}")


def _index_external_ids(where: sa.TextClause | None) -> None:
    op.drop_index(EXTERNAL_IDS, table_name="runs")
    op.create_index(
        EXTERNAL_IDS,
        "runs",
        ["workspace_id", "external_id"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    _index_external_ids(HAS_EXTERNAL_ID)
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
    _index_external_ids(None)
