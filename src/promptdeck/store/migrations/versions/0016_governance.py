"""governance: workspaces archived, scoped keys, rate limits, budgets and the audit log

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 11:20:00.000000

Shared infrastructure (docs/governance.md). Columns added, nothing rewritten:

* `workspaces.archived_at`: an archived workspace keeps its data; its keys are refused.
* `api_keys.deployments` (a JSON list of the deployments an invoke key may call; NULL: all),
  `expires_at`, `rotated_from` (the key a rotation replaced) and `instance_admin` (the key
  `init` prints may manage workspaces).
* `console_members.instance_admin`: the owner `init` creates may manage workspaces.

New tables: `rate_limits` and `budgets` (one row per subject: the workspace, a key, a
deployment or an end user; an empty subject means each one of its kind) and `audit_events`
(who changed what, from where, and the values before and after, never a secret).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("workspaces", sa.Column("archived_at", TIME, nullable=True))
    op.add_column("api_keys", sa.Column("deployments", sa.JSON(), nullable=True))
    op.add_column("api_keys", sa.Column("expires_at", TIME, nullable=True))
    op.add_column("api_keys", sa.Column("rotated_from", ID, nullable=True))
    op.add_column(
        "api_keys", sa.Column("instance_admin", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "console_members",
        sa.Column("instance_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "rate_limits",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("subject_kind", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_rate_limits_workspace_id_workspaces"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rate_limits"),
        sa.UniqueConstraint(
            "workspace_id", "subject_kind", "subject", name="uq_rate_limits_workspace_id_subject_kind_subject"
        ),
    )
    op.create_table(
        "budgets",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("subject_kind", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=False),
        sa.Column("period", sa.String(length=5), nullable=False),
        sa.Column("amount_usd", sa.Float(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_budgets_workspace_id_workspaces"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.UniqueConstraint(
            "workspace_id",
            "subject_kind",
            "subject",
            "period",
            name="uq_budgets_workspace_id_subject_kind_subject_period",
        ),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("actor_key_id", ID, nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target_type", sa.String(length=30), nullable=False),
        sa.Column("target_id", sa.String(length=320), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_workspace_id_created_at", "audit_events", ["workspace_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_workspace_id_created_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("budgets")
    op.drop_table("rate_limits")
    op.drop_column("console_members", "instance_admin")
    for column in ("instance_admin", "rotated_from", "expires_at", "deployments"):
        op.drop_column("api_keys", column)
    op.drop_column("workspaces", "archived_at")
