"""run log indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 07:40:00.000000

Indexes for the latency, cost and tokens sorts of the run log, and a numeric metadata index that
holds only the numeric values (it replaces ix_run_metadata_num, which held a row per metadata
value). Measured at a million runs in docs/performance.md.

On PostgreSQL, CREATE INDEX blocks writes to the table while it builds (about 2 s per index at
a million runs on the benchmark machine, 7 s in all): the run writer's queue holds the runs. To
avoid even that on a big table, create the indexes beforehand with CREATE INDEX CONCURRENTLY and
the same names and definitions (docs/performance.md shows the statements): this migration skips
the ones that exist.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NUMERIC = sa.text("value_num IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_runs_workspace_latency",
        "runs",
        ["workspace_id", "duration_ms", "id", "created_at"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_runs_workspace_cost",
        "runs",
        ["workspace_id", sa.text("coalesce(cost, -1.0)"), "id", "created_at"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_runs_workspace_tokens",
        "runs",
        ["workspace_id", sa.text("(input_tokens + output_tokens)"), "id", "created_at"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_run_metadata_numbers",
        "run_metadata",
        ["workspace_id", "key", "value_num"],
        sqlite_where=NUMERIC,
        postgresql_where=NUMERIC,
        if_not_exists=True,
    )
    op.drop_index("ix_run_metadata_num", table_name="run_metadata", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_run_metadata_num", "run_metadata", ["workspace_id", "key", "value_num"])
    op.drop_index("ix_run_metadata_numbers", table_name="run_metadata")
    op.drop_index("ix_runs_workspace_tokens", table_name="runs")
    op.drop_index("ix_runs_workspace_cost", table_name="runs")
    op.drop_index("ix_runs_workspace_latency", table_name="runs")
