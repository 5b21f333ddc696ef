"""usage rollups

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 07:40:00.000000

Creates the usage rollups, their latency bins and the end users, then fills them from the runs
already logged, with one INSERT ... SELECT per dimension grouped by UTC hour, so that analytics
cover the runs written before the upgrade too. The rules are those of the run writer at this
revision (domain/usage_dimensions.py; tests/store/test_usage_rollups.py proves they agree):
metadata keys and values up to 64 characters, at most 50 keys per workspace and hour and 1,000
values per key and hour (here: the most used ones; the writer keeps the first ones seen).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The latency bins' upper edges as domain/latency_histogram.py had them at this revision (1 ms,
# growing by 1.2 to the first power past 15 minutes: 77 edges), frozen here: a migration
# imports nothing from the live package.
EDGES: tuple[float, ...] = tuple(1.2**k for k in range(77))

USAGE_COUNTERS = (
    "runs",
    "errors",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
    "feedback_count",
    "feedback_scored",
    "feedback_score_sum",
    "thumbs_up",
    "thumbs_down",
)
FLOAT_COUNTERS = {"cost", "latency_ms_sum", "ttft_ms_sum", "feedback_score_sum"}
META_TEXT_MAX = 64
META_KEYS_PER_HOUR = 50
META_VALUES_PER_HOUR = 1000


def _counters(names: tuple[str, ...]) -> list[sa.Column[Any]]:
    return [
        sa.Column(name, sa.Float() if name in FLOAT_COUNTERS else sa.BigInteger(), nullable=False)
        for name in names
    ]


def _key(with_bin: bool = False) -> list[sa.Column[Any]]:
    return [
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("dimension", sa.String(length=80), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        *([sa.Column("bin", sa.SmallInteger(), nullable=False)] if with_bin else []),
    ]


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        *_key(),
        *_counters(USAGE_COUNTERS),
        sa.PrimaryKeyConstraint(
            "workspace_id", "dimension", "bucket_start", "value", name=op.f("pk_usage_rollups")
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("usage_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_rollups_value", ["workspace_id", "dimension", "value", "bucket_start"], unique=False
        )
    op.create_table(
        "usage_latency_bins",
        *_key(with_bin=True),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id", "dimension", "bucket_start", "value", "bin", name=op.f("pk_usage_latency_bins")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "end_users",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("end_user", sa.String(length=200), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        *_counters(("runs", "errors", "input_tokens", "output_tokens", "cost")),
        sa.PrimaryKeyConstraint("workspace_id", "end_user", name=op.f("pk_end_users")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("end_users", schema=None) as batch_op:
        batch_op.create_index("ix_end_users_workspace_last_seen", ["workspace_id", "last_seen"], unique=False)
    _backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("end_users", schema=None) as batch_op:
        batch_op.drop_index("ix_end_users_workspace_last_seen")
    op.drop_table("end_users")
    op.drop_table("usage_latency_bins")
    with op.batch_alter_table("usage_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_rollups_value")
    op.drop_table("usage_rollups")


# ── backfill ───────────────────────────────────────────────────────────────────

TEXT_COLUMNS = ("id", "workspace_id", "deployment", "variant", "model", "provider", "end_user", "status")
runs = sa.table(
    "runs",
    *(sa.column(name, sa.String()) for name in TEXT_COLUMNS),
    *(
        sa.column(name)
        for name in (
            "created_at",
            "version_number",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost",
            "duration_ms",
            "ttft_ms",
        )
    ),
)
run_metadata = sa.table(
    "run_metadata",
    sa.column("run_id", sa.String()),
    sa.column("key", sa.String()),
    sa.column("value_text", sa.String()),
)
feedback = sa.table(
    "feedback", sa.column("run_id"), sa.column("workspace_id"), sa.column("quality"), sa.column("thumbs")
)
usage_rollups = sa.table(
    "usage_rollups",
    *(sa.column(n) for n in ("workspace_id", "dimension", "bucket_start", "value", *USAGE_COUNTERS)),
)
usage_latency_bins = sa.table(
    "usage_latency_bins",
    *(sa.column(n) for n in ("workspace_id", "dimension", "bucket_start", "value", "bin", "runs")),
)
end_users = sa.table(
    "end_users",
    *(
        sa.column(n)
        for n in (
            "workspace_id",
            "end_user",
            "first_seen",
            "last_seen",
            "runs",
            "errors",
            "input_tokens",
            "output_tokens",
            "cost",
        )
    ),
)


def _hour(column: Any, dialect: str) -> Any:
    """The UTC hour a stored time falls in, stored as the application stores times."""
    if dialect == "postgresql":
        utc: Any = sa.literal_column("'UTC'")
        hour: Any = sa.literal_column("'hour'")
        return sa.func.timezone(utc, sa.func.date_trunc(hour, sa.func.timezone(utc, column)))
    return sa.func.strftime(sa.literal_column("'%Y-%m-%d %H:00:00.000000'"), column)  # SQLAlchemy's format


def _latency_bin(column: Any) -> Any:
    """domain/latency_histogram.bin_of, in SQL."""
    return sa.case(*((column < edge, index) for index, edge in enumerate(EDGES)), else_=len(EDGES))


def _per_run(dialect: str, *extra: Any, join_metadata: bool = False) -> sa.Select[Any]:
    """One row per run (per metadata row with join_metadata): its hour, latency bin, counters
    and feedback sums, plus `extra` columns."""
    scores = (
        sa.select(
            feedback.c.run_id,
            feedback.c.workspace_id,
            sa.func.count().label("feedback_count"),
            sa.func.count(feedback.c.quality).label("feedback_scored"),
            sa.func.coalesce(sa.func.sum(feedback.c.quality), 0.0).label("feedback_score_sum"),
            sa.func.sum(sa.case((feedback.c.thumbs == "up", 1), else_=0)).label("thumbs_up"),
            sa.func.sum(sa.case((feedback.c.thumbs == "down", 1), else_=0)).label("thumbs_down"),
        )
        .group_by(feedback.c.run_id, feedback.c.workspace_id)
        .subquery("scores")
    )
    source: Any = runs.outerjoin(
        scores, sa.and_(scores.c.run_id == runs.c.id, scores.c.workspace_id == runs.c.workspace_id)
    )
    if join_metadata:
        source = source.join(run_metadata, run_metadata.c.run_id == runs.c.id)
    return sa.select(
        runs.c.workspace_id,
        _hour(runs.c.created_at, dialect).label("bucket_start"),
        _latency_bin(runs.c.duration_ms).label("bin"),
        sa.case((runs.c.status == "error", 1), else_=0).label("error"),
        runs.c.input_tokens,
        runs.c.cached_input_tokens,
        runs.c.output_tokens,
        runs.c.reasoning_tokens,
        sa.func.coalesce(runs.c.cost, 0.0).label("cost"),
        runs.c.duration_ms,
        runs.c.ttft_ms,
        *(sa.func.coalesce(scores.c[name], 0).label(name) for name in USAGE_COUNTERS[10:]),
        *extra,
    ).select_from(source)


def _sums(rows: Any) -> list[Any]:
    """The counters of USAGE_COUNTERS over grouped per-run rows."""
    return [
        sa.func.count().label("runs"),
        sa.func.sum(rows.c.error).label("errors"),
        *(sa.func.sum(rows.c[n]).label(n) for n in USAGE_COUNTERS[2:6]),
        sa.func.sum(rows.c.cost).label("cost"),
        sa.func.sum(rows.c.duration_ms).label("latency_ms_sum"),
        sa.func.coalesce(sa.func.sum(rows.c.ttft_ms), 0.0).label("ttft_ms_sum"),
        sa.func.count(rows.c.ttft_ms).label("ttft_count"),
        *(sa.func.sum(rows.c[n]).label(n) for n in USAGE_COUNTERS[10:]),
    ]


def _labelled(rows: Any, dimension: Any, value: Any, *where: Any) -> Any:
    """Per-run rows with their `dimension` and `value` as columns (so that grouping by them
    never repeats an expression with bound parameters, which PostgreSQL would refuse)."""
    return sa.select(rows, dimension.label("dimension"), value.label("value")).where(*where).subquery()


def _fill(conn: Any, rows: Any, with_bins: bool = True) -> None:
    """Insert the rollup rows (and latency bins) of labelled per-run rows, by hour and value."""
    key = [rows.c.workspace_id, rows.c.dimension, rows.c.bucket_start, rows.c.value]
    names = ["workspace_id", "dimension", "bucket_start", "value"]
    conn.execute(
        usage_rollups.insert().from_select(
            [*names, *USAGE_COUNTERS], sa.select(*key, *_sums(rows)).group_by(*key)
        )
    )
    if with_bins:
        conn.execute(
            usage_latency_bins.insert().from_select(
                [*names, "bin", "runs"],
                sa.select(*key, rows.c.bin, sa.func.count()).group_by(*key, rows.c.bin),
            )
        )


def _backfill(conn: Any) -> None:
    dialect = conn.dialect.name

    def text(value: str) -> Any:
        return sa.literal(value, sa.String())

    plain = _per_run(
        dialect,
        runs.c.deployment,
        runs.c.variant,
        runs.c.version_number,
        runs.c.model,
        runs.c.provider,
        runs.c.end_user,
    ).subquery("plain")
    c = plain.c
    variant = sa.case((c.variant.is_(None), text("")), else_=c.deployment + text("/") + c.variant)
    version = sa.case(
        (c.version_number.is_(None), text("")),
        else_=c.deployment + text("@v") + sa.cast(c.version_number, sa.String),
    )
    for dimension, value in (
        ("all", text("")),
        ("deployment", c.deployment),
        ("variant", variant),
        ("version", version),
        ("model", sa.func.coalesce(c.model, text(""))),
        ("provider", sa.func.coalesce(c.provider, text(""))),
    ):
        _fill(conn, _labelled(plain, text(dimension), value))
    _fill(conn, _labelled(plain, text("user"), sa.func.coalesce(c.end_user, text(""))), with_bins=False)
    _fill_metadata(conn, dialect)
    _fill_end_users(conn)


def _fill_metadata(conn: Any, dialect: str) -> None:
    """`metakey` and `meta:<key>` rows, within the caps on keys and values per hour."""
    tagged = (
        _per_run(
            dialect,
            run_metadata.c.key.label("key"),
            run_metadata.c.value_text.label("text"),
            join_metadata=True,
        )
        .where(sa.func.length(run_metadata.c.key) <= META_TEXT_MAX)
        .subquery("tagged")
    )
    t = tagged.c
    place = [t.workspace_id, t.bucket_start]
    ranked_keys = (
        sa.select(
            *place,
            t.key,
            sa.func.row_number()
            .over(partition_by=place, order_by=[sa.func.count().desc(), t.key])
            .label("rank"),
        )
        .group_by(*place, t.key)
        .subquery("ranked_keys")
    )
    ranked_values = (
        sa.select(
            *place,
            t.key,
            t.text,
            sa.func.row_number()
            .over(partition_by=[*place, t.key], order_by=[sa.func.count().desc(), t.text])
            .label("rank"),
        )
        .where(sa.func.length(t.text) <= META_TEXT_MAX)
        .group_by(*place, t.key, t.text)
        .subquery("ranked_values")
    )
    k, v = ranked_keys.c, ranked_values.c
    same_key = sa.and_(k.workspace_id == t.workspace_id, k.bucket_start == t.bucket_start, k.key == t.key)
    kept = sa.select(tagged).join(ranked_keys, same_key).where(k.rank <= META_KEYS_PER_HOUR).subquery("kept")
    _fill(conn, _labelled(kept, sa.literal("metakey", sa.String()), kept.c.key))
    same_value = sa.and_(
        v.workspace_id == kept.c.workspace_id,
        v.bucket_start == kept.c.bucket_start,
        v.key == kept.c.key,
        v.text == kept.c.text,
    )
    valued = (
        sa.select(kept)
        .join(ranked_values, same_value)
        .where(v.rank <= META_VALUES_PER_HOUR)
        .subquery("valued")
    )
    _fill(conn, _labelled(valued, sa.literal("meta:", sa.String()) + valued.c.key, valued.c.text))


def _fill_end_users(conn: Any) -> None:
    r = runs.c
    conn.execute(
        end_users.insert().from_select(
            [
                "workspace_id",
                "end_user",
                "first_seen",
                "last_seen",
                "runs",
                "errors",
                "input_tokens",
                "output_tokens",
                "cost",
            ],
            sa.select(
                r.workspace_id,
                r.end_user,
                sa.func.min(r.created_at),
                sa.func.max(r.created_at),
                sa.func.count(),
                sa.func.sum(sa.case((r.status == "error", 1), else_=0)),
                sa.func.sum(r.input_tokens),
                sa.func.sum(r.output_tokens),
                sa.func.coalesce(sa.func.sum(r.cost), 0.0),
            )
            .where(r.end_user.is_not(None), r.end_user != "")
            .group_by(r.workspace_id, r.end_user),
        )
    )
