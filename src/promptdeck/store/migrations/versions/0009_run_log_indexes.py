"""run log indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 07:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: filled in with the tables


def downgrade() -> None:
    pass
