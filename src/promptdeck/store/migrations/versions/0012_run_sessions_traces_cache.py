"""runs: session id, trace id, cache hit and saved cost

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 05:30:00.000000

Four nullable columns of `runs` for the operations features (docs/operations.md): the session a
run belongs to (a conversation or a request of the caller's, with an index so one session's runs
are found at once), the OpenTelemetry trace the run's span belongs to, whether the answer came
from the response cache, and what the provider call would have cost. Adding nullable columns
rewrites no row on SQLite or PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("session_id", sa.String(200)))
    op.add_column("runs", sa.Column("trace_id", sa.String(32)))
    op.add_column("runs", sa.Column("cache_hit", sa.Boolean))
    op.add_column("runs", sa.Column("saved_cost", sa.Float))
    op.create_index("ix_runs_workspace_session_created", "runs", ["workspace_id", "session_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_workspace_session_created", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        for column in ("saved_cost", "cache_hit", "trace_id", "session_id"):
            batch.drop_column(column)
