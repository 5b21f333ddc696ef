"""datasets: a prompt's named sets of test cases

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 08:00:00.000000

Two new tables for evaluations (docs/evaluations.md "Datasets"): a dataset belongs to one prompt
(its name unique per prompt) and keeps the evaluator specs that judge its cases as JSON; its cases
hold inputs, an optional expected output, a chat history and tags, in order, and the run a case
was made from when it came from the logs. Nothing existing is rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("prompt_id", ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("evaluators", sa.JSON(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_datasets_workspace_id_workspaces"
        ),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name="fk_datasets_prompt_id_prompts"),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("prompt_id", "name", name="uq_datasets_prompt_id_name"),
    )
    op.create_index("ix_datasets_workspace_id_prompt_id", "datasets", ["workspace_id", "prompt_id"])
    op.create_table(
        "dataset_cases",
        sa.Column("id", ID, nullable=False),
        sa.Column("dataset_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("expected", sa.Text(), nullable=True),
        sa.Column("chat_history", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("source_run_id", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_cases_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_cases"),
    )
    op.create_index("ix_dataset_cases_dataset_id_position", "dataset_cases", ["dataset_id", "position"])


def downgrade() -> None:
    op.drop_index("ix_dataset_cases_dataset_id_position", table_name="dataset_cases")
    op.drop_table("dataset_cases")
    op.drop_index("ix_datasets_workspace_id_prompt_id", table_name="datasets")
    op.drop_table("datasets")
