"""The schema, as SQLAlchemy Core tables (the same on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Timestamp(sa.TypeDecorator[datetime]):
    """A UTC time. SQLite hands stored times back naive; they are made aware again, as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


Id = sa.String(32)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("retention_days", sa.Integer),  # runs older than this are pruned; NULL: kept forever
    sa.Column("archived_at", Timestamp),  # archived: data kept, keys refused (docs/governance.md)
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.String(100), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_used_at", Timestamp),
    sa.Column("revoked_at", Timestamp),
    sa.Column("deployments", sa.JSON),  # the deployments an invoke key may call; NULL: all
    sa.Column("expires_at", Timestamp),  # refused from then on; NULL: never
    sa.Column("rotated_from", Id),  # the key a rotation replaced
    sa.Column("instance_admin", sa.Boolean, nullable=False, server_default=sa.false()),  # manages workspaces
)

prompts = sa.Table(
    "prompts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("slug", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    # what a new version's undeclared template variables become: "declare" (required inputs) or "refuse"
    sa.Column("undeclared_variables", sa.String(10), nullable=False, server_default="declare"),
    sa.UniqueConstraint("workspace_id", "slug"),
)

prompt_versions = sa.Table(
    "prompt_versions",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("prompt_id", Id, sa.ForeignKey("prompts.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("messages", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("tools", sa.JSON),
    sa.Column("tool_choice", sa.JSON),
    sa.Column("response_format", sa.JSON),
    sa.Column("template_syntax", sa.String(20)),  # NULL: the default `{{ name }}` syntax
    sa.Column("extra_inputs", sa.String(10)),  # NULL: "allow"
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("author", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("prompt_id", "number"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("prompt_id", Id, sa.ForeignKey("prompts.id"), nullable=False),
    sa.Column("default_variant", sa.String(100), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("workspace_id", "name"),
)

variants = sa.Table(
    "variants",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("deployment_id", Id, sa.ForeignKey("deployments.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("version_id", Id, sa.ForeignKey("prompt_versions.id"), nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("config", sa.JSON),  # timeouts, retries, fallbacks (domain/reliability.py)
    # Each new version of the prompt moves this variant (set by moves to `latest`, not by config).
    sa.Column("follows_latest", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("deployment_id", "name"),
)

variant_moves = sa.Table(
    "variant_moves",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("variant_id", Id, sa.ForeignKey("variants.id"), nullable=False, index=True),
    sa.Column("from_version_id", Id),
    sa.Column("to_version_id", Id, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False, default=""),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("created_at", Timestamp, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("request_id", sa.String(40), nullable=False, unique=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("dialect", sa.String(20), nullable=False),
    sa.Column("deployment", sa.String(100), nullable=False),
    sa.Column("deployment_id", Id),
    sa.Column("variant", sa.String(100)),
    sa.Column("version_id", Id),
    sa.Column("version_number", sa.Integer),
    sa.Column("model", sa.String(200)),
    sa.Column("provider", sa.String(50)),
    sa.Column("streamed", sa.Boolean, nullable=False),
    sa.Column("inputs", sa.JSON),
    sa.Column("messages", sa.JSON),
    sa.Column("output", sa.Text, nullable=False, default=""),
    sa.Column("reasoning", sa.Text, nullable=False, default=""),
    sa.Column("tool_calls", sa.JSON),
    sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cached_input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cache_write_input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cost", sa.Float),
    sa.Column("price_known", sa.Boolean),
    sa.Column("usage_estimated", sa.Boolean),
    sa.Column("attempts", sa.JSON),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("stop_reason", sa.String(40)),
    sa.Column("error_code", sa.String(60)),
    sa.Column("error_message", sa.Text),
    sa.Column("metadata", sa.JSON),
    sa.Column("end_user", sa.String(200)),
    sa.Column("external_id", sa.String(200)),
    sa.Column("api_key_id", Id),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("session_id", sa.String(200)),  # migration 0012: docs/operations.md
    sa.Column("trace_id", sa.String(32)),
    sa.Column("cache_hit", sa.Boolean),
    sa.Column("saved_cost", sa.Float),
    sa.Index("ix_runs_workspace_created", "workspace_id", "created_at", "id"),
    sa.Index("ix_runs_workspace_session_created", "workspace_id", "session_id", "created_at"),
    # The run log's most selective filters; the others narrow what these (or the time index) find.
    sa.Index("ix_runs_workspace_deployment_created", "workspace_id", "deployment", "created_at"),
    sa.Index("ix_runs_workspace_status_created", "workspace_id", "status", "created_at"),
    sa.Index("ix_runs_workspace_end_user_created", "workspace_id", "end_user", "created_at"),
    # The latency, cost and tokens sorts: a page walks one of these and stops after `limit` matches
    # (docs/performance.md). The expressions are store/run_log.py's SORT_KEYS, written the same way.
    sa.Index("ix_runs_workspace_latency", "workspace_id", "duration_ms", "id", "created_at"),
    sa.Index("ix_runs_workspace_cost", "workspace_id", sa.text("coalesce(cost, -1.0)"), "id", "created_at"),
    sa.Index(
        "ix_runs_workspace_tokens",
        "workspace_id",
        sa.text("(input_tokens + output_tokens)"),
        "id",
        "created_at",
    ),
    # Vellum's external ids are unique per workspace; only runs with one are indexed.
    sa.Index(
        "uq_runs_workspace_external_id",
        "workspace_id",
        "external_id",
        unique=True,
        sqlite_where=sa.text("external_id IS NOT NULL"),
        postgresql_where=sa.text("external_id IS NOT NULL"),
    ),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("run_id", Id, nullable=False),  # no foreign key: a run may still be on its way to the writer
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("quality", sa.Float),  # 0 (worst) .. 1 (best)
    sa.Column("thumbs", sa.String(4)),  # "up" | "down"
    sa.Column("text", sa.Text),  # what the answer should have been
    sa.Column("metadata", sa.JSON),
    sa.Column("timestamp", Timestamp),  # when the caller collected it
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_feedback_workspace_run", "workspace_id", "run_id", "created_at"),
)

# A run's metadata, one row per key, so it can be filtered on with an index on either database.
# Written with the run, in the same transaction. `value_text` is the value as text (cut to
# META_TEXT_MAX characters); `value_num` holds it as well when it is a number (or a numeric string).
run_metadata = sa.Table(
    "run_metadata",
    metadata,
    sa.Column("run_id", Id, primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("value_text", sa.String(256), nullable=False),
    sa.Column("value_num", sa.Float),
    sa.Index("ix_run_metadata_text", "workspace_id", "key", "value_text", "created_at"),
    # Only the numeric values (a tenth of the rows at most, usually): `key>n` and `key<n` imply it.
    sa.Index(
        "ix_run_metadata_numbers",
        "workspace_id",
        "key",
        "value_num",
        sqlite_where=sa.text("value_num IS NOT NULL"),
        postgresql_where=sa.text("value_num IS NOT NULL"),
    ),
)

provider_credentials = sa.Table(
    "provider_credentials",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("provider", sa.String(50), nullable=False),
    sa.Column("base_url", sa.String(500)),
    sa.Column("secret", sa.Text, nullable=False),  # Fernet-encrypted
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("workspace_id", "provider"),
)

price_overrides = sa.Table(
    "price_overrides",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("input_per_mtok", sa.Float, nullable=False),
    sa.Column("output_per_mtok", sa.Float, nullable=False),
    sa.Column("cached_input_per_mtok", sa.Float),
    sa.Column("cache_write_per_mtok", sa.Float),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("workspace_id", "model"),
)

# --- console: members who sign in to the web console, their sessions, and invitations ---

console_members = sa.Table(
    "console_members",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("email", sa.String(320), nullable=False, index=True),  # lower-cased
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("password_hash", sa.String(200), nullable=False),  # argon2id
    sa.Column("role", sa.String(10), nullable=False),  # owner | editor | viewer
    sa.Column("must_change_password", sa.Boolean, nullable=False, default=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", Timestamp),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_sign_in_at", Timestamp),
    sa.Column("disabled_at", Timestamp),  # a disabled member cannot sign in
    sa.Column("instance_admin", sa.Boolean, nullable=False, server_default=sa.false()),  # manages workspaces
    sa.UniqueConstraint("workspace_id", "email"),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie's token
    sa.Column("member_id", Id, sa.ForeignKey("console_members.id"), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_seen_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),  # absolute end, whatever the activity
)

console_invites = sa.Table(
    "console_invites",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # SHA-256 of the link's token
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False, index=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("invited_by", sa.String(320), nullable=False),  # the inviting member's email
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("accepted_at", Timestamp),
)

# --- usage analytics: hourly rollups kept by the run writer in the runs' own transaction, and
# added to by feedback (store/usage_rollups.py; dimensions in domain/usage_dimensions.py). Every
# writer adds to these rows with INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n, so
# replicas writing the same hour add up. Pruning runs leaves them alone. ---

USAGE_COUNTERS = (
    "runs",
    "errors",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",  # USD, of the runs whose price was known
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",  # runs with a time to first token
    "feedback_count",  # feedback items
    "feedback_scored",  # feedback items with a score
    "feedback_score_sum",
    "thumbs_up",
    "thumbs_down",
)
_FLOAT_COUNTERS = {"cost", "latency_ms_sum", "ttft_ms_sum", "feedback_score_sum"}


def _counter_columns(names: tuple[str, ...]) -> list[sa.Column[Any]]:
    return [
        sa.Column(name, sa.Float if name in _FLOAT_COUNTERS else sa.BigInteger, nullable=False)
        for name in names
    ]


usage_rollups = sa.Table(
    "usage_rollups",
    metadata,
    sa.Column("workspace_id", Id, primary_key=True),
    sa.Column("dimension", sa.String(80), primary_key=True),  # all, deployment, ..., meta:<key>
    sa.Column("bucket_start", Timestamp, primary_key=True),  # the UTC hour
    sa.Column("value", sa.String(256), primary_key=True),  # "" for runs with none
    *_counter_columns(USAGE_COUNTERS),
    # one value's hours (an end user's usage, one deployment's series)
    sa.Index("ix_usage_rollups_value", "workspace_id", "dimension", "value", "bucket_start"),
    sqlite_with_rowid=False,  # SQLite keeps the rows in the primary key's tree: one tree per upsert
)

# Latency histograms (domain/latency_histogram.py) of the same rows but the `user` dimension.
usage_latency_bins = sa.Table(
    "usage_latency_bins",
    metadata,
    sa.Column("workspace_id", Id, primary_key=True),
    sa.Column("dimension", sa.String(80), primary_key=True),
    sa.Column("bucket_start", Timestamp, primary_key=True),
    sa.Column("value", sa.String(256), primary_key=True),
    sa.Column("bin", sa.SmallInteger, primary_key=True),
    sa.Column("runs", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

END_USER_COUNTERS = ("runs", "errors", "input_tokens", "output_tokens", "cost")

# One row per end user ever seen: first and last run (min / max on upsert) and totals.
end_users = sa.Table(
    "end_users",
    metadata,
    sa.Column("workspace_id", Id, primary_key=True),
    sa.Column("end_user", sa.String(200), primary_key=True),
    sa.Column("first_seen", Timestamp, nullable=False),
    sa.Column("last_seen", Timestamp, nullable=False),
    *_counter_columns(END_USER_COUNTERS),
    sa.Index("ix_end_users_workspace_last_seen", "workspace_id", "last_seen"),
    sqlite_with_rowid=False,
)

# --- webhooks: endpoints told about events, one delivery per (event, endpoint), each try kept ---

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False, index=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("description", sa.String(500), nullable=False, default=""),
    sa.Column("events", sa.JSON, nullable=False),  # event types, e.g. ["version.created"]
    sa.Column("secret", sa.Text, nullable=False),  # Fernet-encrypted signing secret
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("endpoint_id", Id, sa.ForeignKey("webhook_endpoints.id"), nullable=False),
    sa.Column("event_id", Id, nullable=False),
    sa.Column("event_type", sa.String(50), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON signed and sent on every try
    sa.Column("state", sa.String(10), nullable=False),  # pending, delivered or failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Timestamp),  # NULL once finished
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp),
    sa.Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    sa.Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("delivery_id", Id, sa.ForeignKey("webhook_deliveries.id"), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer),  # NULL: no answer (see error)
    sa.Column("error", sa.Text),
    sa.Column("next_attempt_at", Timestamp),  # NULL: no further try
)

# --- datasets: a prompt's test cases, evaluated before a version ships (docs/evaluations.md) ---

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("prompt_id", Id, sa.ForeignKey("prompts.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("evaluators", sa.JSON, nullable=False),  # EvaluatorSpec data: [{"type": ...}, ...]
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("prompt_id", "name"),
    sa.Index("ix_datasets_workspace_id_prompt_id", "workspace_id", "prompt_id"),
)

dataset_cases = sa.Table(
    "dataset_cases",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("dataset_id", Id, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # the order cases are listed and run in
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("expected", sa.Text),
    sa.Column("chat_history", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("source_run_id", Id),  # the run it was made from ("Add to dataset")
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_dataset_cases_dataset_id_position", "dataset_id", "position"),
)

# --- evaluations: a version, draft or variant run on a dataset's cases, and each case's result ---

evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("prompt_id", Id, sa.ForeignKey("prompts.id"), nullable=False),
    sa.Column("dataset_id", Id, nullable=False),  # no foreign key: results outlive a deleted dataset
    # {"version": n} | {"draft": {...}} | {"deployment": d, "variant": v, "version": n}
    sa.Column("target", sa.JSON, nullable=False),
    sa.Column("version_number", sa.Integer),  # NULL for a draft
    sa.Column("evaluators", sa.JSON, nullable=False),  # the evaluator specs it was judged by
    sa.Column("status", sa.String(10), nullable=False),  # queued, running, done, cancelled, failed
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("completed", sa.Integer, nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("summary", sa.JSON),  # domain/evaluation_summary.py, once finished
    sa.Column("error", sa.Text),  # why it failed
    sa.Column("actor", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp),
    sa.Column("heartbeat_at", Timestamp),  # written while it runs: a stale one was interrupted
    sa.Index("ix_evaluations_workspace_id_prompt_id_created_at", "workspace_id", "prompt_id", "created_at"),
    sa.Index(
        "ix_evaluations_prompt_id_dataset_id_version_number", "prompt_id", "dataset_id", "version_number"
    ),
)

evaluation_results = sa.Table(
    "evaluation_results",
    metadata,
    sa.Column("evaluation_id", Id, sa.ForeignKey("evaluations.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),  # the case's place in the dataset, from 1
    sa.Column("case_id", Id, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("scores", sa.JSON, nullable=False),  # [{evaluator, score, passed, error}]
    sa.Column("status", sa.String(10), nullable=False),  # passed, failed, errored
    sa.Column("input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("cost", sa.Float),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("run_id", Id),
)

# --- governance (docs/governance.md): rate limits and budgets per subject, and the audit log ---
# A limit's or budget's subject is one of domain/quotas.SUBJECT_KINDS; an empty `subject` means
# each one of its kind (every key, every deployment, every end user); a workspace's is empty.

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("subject_kind", sa.String(10), nullable=False),  # workspace | key | deployment | end_user
    sa.Column("subject", sa.String(320), nullable=False),  # a key id, deployment name or end user; "": each
    sa.Column("requests_per_minute", sa.Integer),
    sa.Column("tokens_per_minute", sa.Integer),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("workspace_id", "subject_kind", "subject"),
)

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("subject_kind", sa.String(10), nullable=False),
    sa.Column("subject", sa.String(320), nullable=False),
    sa.Column("period", sa.String(5), nullable=False),  # day | month (UTC)
    sa.Column("amount_usd", sa.Float, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("workspace_id", "subject_kind", "subject", "period"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id),  # NULL: an instance-level action (a workspace created)
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("actor", sa.String(320), nullable=False),  # a member's email or a key's name
    sa.Column("actor_key_id", Id),  # the key used, when it was a key
    sa.Column("address", sa.String(64), nullable=False),  # the client's address
    sa.Column("user_agent", sa.String(300), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),  # e.g. key.created, budget.updated
    sa.Column("target_type", sa.String(30), nullable=False),
    sa.Column("target_id", sa.String(320), nullable=False),
    sa.Column("before", sa.JSON),  # never a secret (store/audit_log.py redacts)
    sa.Column("after", sa.JSON),
    sa.Index("ix_audit_events_workspace_id_created_at", "workspace_id", "created_at"),
)
