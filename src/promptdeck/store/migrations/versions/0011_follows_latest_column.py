"""follows_latest: a column of variants, out of the variant's config JSON

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:55:00.000000

Whether a variant follows `latest` is the catalog's own state (set by moves, pushes and imports),
not a setting its users write: it was kept as `"follows_latest": true` inside the `config` JSON
beside timeouts, retries, fallbacks and split. It becomes the boolean column
`variants.follows_latest`; each `config.follows_latest` is moved into it and removed from the
JSON (an empty config becomes NULL). Variants are few (a handful per deployment), so the rows are
rewritten one by one in Python, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEY = "follows_latest"

# The table as this migration sees it: never the live package's (it changes after this one).
variants = sa.table(
    "variants",
    sa.column("id", sa.String),
    sa.column("config", sa.JSON),
    sa.column(KEY, sa.Boolean),
)


def upgrade() -> None:
    op.add_column("variants", sa.Column(KEY, sa.Boolean, nullable=False, server_default=sa.false()))
    bind = op.get_bind()
    for row in bind.execute(sa.select(variants.c.id, variants.c.config)).all():
        config: Any = row.config
        if not isinstance(config, dict) or KEY not in config:
            continue
        follows = config.pop(KEY) is True
        bind.execute(
            variants.update().where(variants.c.id == row.id).values(config=config or None, **{KEY: follows})
        )


def downgrade() -> None:
    bind = op.get_bind()
    following = bind.execute(
        sa.select(variants.c.id, variants.c.config).where(variants.c[KEY] == sa.true())
    ).all()
    for row in following:
        config = dict(row.config) if isinstance(row.config, dict) else {}
        config[KEY] = True
        bind.execute(variants.update().where(variants.c.id == row.id).values(config=config))
    with op.batch_alter_table("variants") as batch:
        batch.drop_column(KEY)
