"""evaluation heartbeats: a running evaluation says it is alive, so other replicas leave it be

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 11:50:00.000000

An evaluation runs in the replica that started it. Until now a replica starting marked every
unfinished evaluation failed, including one another replica was running. `heartbeat_at` is
written every few seconds by the replica running it; only an evaluation whose heartbeat (or,
never started, its creation) is older than a minute is taken as interrupted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("evaluations", "heartbeat_at")
