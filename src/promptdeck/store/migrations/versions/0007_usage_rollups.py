"""usage rollups

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 07:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder: filled in with the tables


def downgrade() -> None:
    pass
