"""evaluations: runs of a version on a dataset, and each case's result

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 08:00:00.000000

Two new tables (docs/evaluations.md, "Evaluations"): one row per evaluation (what ran — a version,
an unsaved draft or what a variant served —, the evaluators, its state and progress, and its
summary once finished) and one row per case (output, scores, status, tokens, cost, latency, error
and the run it made in the log). Nothing existing is rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("prompt_id", ID, nullable=False),
        sa.Column("dataset_id", ID, nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("evaluators", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_evaluations_workspace_id_workspaces"
        ),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name="fk_evaluations_prompt_id_prompts"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
    )
    op.create_index(
        "ix_evaluations_workspace_id_prompt_id_created_at",
        "evaluations",
        ["workspace_id", "prompt_id", "created_at"],
    )
    op.create_index(
        "ix_evaluations_prompt_id_dataset_id_version_number",
        "evaluations",
        ["prompt_id", "dataset_id", "version_number"],
    )
    op.create_table(
        "evaluation_results",
        sa.Column("evaluation_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("case_id", ID, nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["evaluation_id"], ["evaluations.id"], name="fk_evaluation_results_evaluation_id_evaluations"
        ),
        sa.PrimaryKeyConstraint("evaluation_id", "position", name="pk_evaluation_results"),
    )


def downgrade() -> None:
    op.drop_table("evaluation_results")
    op.drop_index("ix_evaluations_prompt_id_dataset_id_version_number", table_name="evaluations")
    op.drop_index("ix_evaluations_workspace_id_prompt_id_created_at", table_name="evaluations")
    op.drop_table("evaluations")
