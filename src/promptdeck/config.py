"""Settings, read once from PROMPTDECK_* environment variables (pydantic-settings).

A value a setting cannot use stops promptdeck before it starts, with one line per problem that
names the variable, the value and what is expected: `PROMPTDECK_PORT='abc': expected an
integer` (`SettingsError`). Tests and `create_app` pass settings as keyword arguments instead."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(default: Any, *names: str) -> Any:
    """A setting's default and the environment variable(s) it is read from, the first set winning."""
    return Field(default, validation_alias=AliasChoices(*names))


Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # a time limit or an interval
Count = Annotated[int, Field(ge=1)]
NotNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NotNegativeCount = Annotated[int, Field(ge=0)]
OptionalCount = Annotated[Count | None, BeforeValidator(lambda value: None if value == "" else value)]
_lower = BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value)
LogLevel = Annotated[Literal["critical", "error", "warning", "info", "debug", "trace"], _lower]
LogFormat = Annotated[Literal["text", "json"], _lower]
FailPolicy = Annotated[Literal["open", "closed"], _lower]  # what a feature does when its store is down


class SettingsError(ValueError):
    """Settings that cannot be used; the message has one actionable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, populate_by_name=True)

    data_dir: Path = _env(Path(".promptdeck"), "PROMPTDECK_DATA_DIR")
    # empty: a SQLite file in data_dir
    database_url: str = _env("", "PROMPTDECK_DATABASE_URL")
    host: str = _env("127.0.0.1", "PROMPTDECK_HOST")
    port: Port = _env(8400, "PROMPTDECK_PORT")
    # Server processes sharing the port (docs/deploy.md "Several workers"); `serve --workers` wins.
    workers: Count = _env(1, "PROMPTDECK_WORKERS")
    max_body_bytes: Count = _env(1024 * 1024, "PROMPTDECK_MAX_BODY_BYTES")
    cache_ttl_seconds: NotNegative = _env(10.0, "PROMPTDECK_CACHE_TTL")
    # Per cache (API keys, deployments, credentials): found entries, and unknown keys or names.
    cache_max_entries: NotNegativeCount = _env(10_000, "PROMPTDECK_CACHE_MAX_ENTRIES")
    cache_max_misses: NotNegativeCount = _env(1_000, "PROMPTDECK_CACHE_MAX_MISSES")
    # Slow or idle clients (docs/deploy.md): all request headers within `header_timeout`; at most
    # `body_timeout` between two pieces of a body, and `body_min_rate` bytes/s after its first
    # `body_timeout`; an idle keep-alive connection `idle_timeout`.
    header_timeout: Seconds = _env(10.0, "PROMPTDECK_HEADER_TIMEOUT")
    body_timeout: Seconds = _env(20.0, "PROMPTDECK_BODY_TIMEOUT")
    body_min_rate: NotNegative = _env(500.0, "PROMPTDECK_BODY_MIN_RATE")
    idle_timeout: Count = _env(5, "PROMPTDECK_IDLE_TIMEOUT")
    max_connections: Count = _env(4096, "PROMPTDECK_MAX_CONNECTIONS")
    backlog: Count = _env(2048, "PROMPTDECK_BACKLOG")
    keepalive_seconds: Seconds = _env(15.0, "PROMPTDECK_KEEPALIVE_SECONDS")
    local_model_path: str = _env("", "PROMPTDECK_LOCAL_MODEL_PATH")
    local_context_tokens: Count = _env(2048, "PROMPTDECK_LOCAL_CONTEXT")
    openai_base_url: str = _env("https://api.openai.com/v1", "PROMPTDECK_OPENAI_BASE_URL")
    openai_api_key: str = _env("", "PROMPTDECK_OPENAI_API_KEY", "OPENAI_API_KEY")
    anthropic_base_url: str = _env("https://api.anthropic.com", "PROMPTDECK_ANTHROPIC_BASE_URL")
    anthropic_api_key: str = _env("", "PROMPTDECK_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
    gemini_base_url: str = _env("https://generativelanguage.googleapis.com", "PROMPTDECK_GEMINI_BASE_URL")
    gemini_api_key: str = _env("", "PROMPTDECK_GEMINI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
    azure_openai_endpoint: str = _env("", "PROMPTDECK_AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_ENDPOINT")
    azure_openai_api_key: str = _env("", "PROMPTDECK_AZURE_OPENAI_API_KEY", "AZURE_OPENAI_API_KEY")
    azure_openai_api_version: str = _env("2024-10-21", "PROMPTDECK_AZURE_OPENAI_API_VERSION")
    secret_key: str = _env("", "PROMPTDECK_SECRET_KEY")
    upstreams: str = _env("", "PROMPTDECK_UPSTREAMS")
    # Base URLs a caller's raw_overrides.url may point at (comma-separated); none by default.
    raw_override_urls: str = _env("", "PROMPTDECK_RAW_OVERRIDE_URLS")
    upstream_connect_timeout: Seconds = _env(5.0, "PROMPTDECK_UPSTREAM_CONNECT_TIMEOUT")
    upstream_read_timeout: Seconds = _env(60.0, "PROMPTDECK_UPSTREAM_READ_TIMEOUT")
    upstream_total_timeout: Seconds = _env(300.0, "PROMPTDECK_UPSTREAM_TOTAL_TIMEOUT")
    # unset: the run writer's default for the database (store/run_writer.py BATCH_SIZES)
    writer_batch_size: OptionalCount = _env(None, "PROMPTDECK_WRITER_BATCH_SIZE")
    writer_flush_seconds: Seconds = _env(0.25, "PROMPTDECK_WRITER_FLUSH_SECONDS")
    writer_queue_size: Count = _env(50_000, "PROMPTDECK_WRITER_QUEUE_SIZE")
    # The server's logs (docs/deploy.md): one access line a request at `info` and below;
    # `json`: each line one JSON object, for log collectors.
    log_level: LogLevel = _env("info", "PROMPTDECK_LOG_LEVEL")
    log_format: LogFormat = _env("text", "PROMPTDECK_LOG_FORMAT")
    # Development only: webhooks may go to http URLs and loopback or private addresses (a
    # receiver on your machine). Off in production: a stored URL could reach internal services.
    webhooks_allow_private: bool = _env(False, "PROMPTDECK_WEBHOOKS_ALLOW_PRIVATE")
    # Redis (or Valkey) that replicas share, e.g. `redis://host:6379/0`; empty: none. When set, it
    # holds the response cache, the rate-limit and budget counters, and carries change events
    # between replicas (docs/governance.md "Shared state and Redis"); else all live in the process,
    # the response cache in at most `response_cache_mb` MB.
    redis_url: str = _env("", "PROMPTDECK_REDIS_URL")
    response_cache_mb: NotNegative = _env(64.0, "PROMPTDECK_RESPONSE_CACHE_MB")
    # When the store that counts rate limits and budgets (Redis) is unreachable: `open` lets calls
    # through (a warning in the log at most every 10 s), `closed` refuses them with 503
    # `quota_store_unavailable` (docs/governance.md). A budget's worst case takes this many output
    # tokens for a call that sets no `max_tokens`.
    limits_on_store_failure: FailPolicy = _env("open", "PROMPTDECK_LIMITS_ON_STORE_FAILURE")
    budgets_on_store_failure: FailPolicy = _env("closed", "PROMPTDECK_BUDGETS_ON_STORE_FAILURE")
    budget_default_max_tokens: Count = _env(4096, "PROMPTDECK_BUDGET_DEFAULT_MAX_TOKENS")
    # Prometheus metrics at /metrics (docs/operations.md): on unless `off`; scraped with this
    # bearer token when set, else from loopback only. Label sets per series beyond the cap fold
    # into `(other)`.
    metrics: bool = _env(True, "PROMPTDECK_METRICS")
    metrics_token: str = _env("", "PROMPTDECK_METRICS_TOKEN")
    metrics_label_sets: Count = _env(500, "PROMPTDECK_METRICS_LABEL_SETS")
    # OpenTelemetry traces are turned on by the standard OTEL_* variables (docs/operations.md);
    # this adds the prompt and the completion to each run's span (off: they may hold personal data).
    trace_content: bool = _env(False, "PROMPTDECK_TRACE_CONTENT")
    # What `image` and `document` inputs may be (docs/configuration.md): the media types a data:
    # URL may have (comma-separated), and the most bytes it may hold.
    media_types_image: str = _env("image/png,image/jpeg,image/gif,image/webp", "PROMPTDECK_MEDIA_TYPES_IMAGE")
    media_types_document: str = _env("application/pdf", "PROMPTDECK_MEDIA_TYPES_DOCUMENT")
    media_max_bytes: Count = _env(5 * 1024 * 1024, "PROMPTDECK_MEDIA_MAX_BYTES")
    # The longest promptdeck spends fetching a file a provider takes only as bytes (a PDF by URL
    # for OpenAI Chat Completions and Azure; docs/providers.md "Fetching"), redirects included.
    media_fetch_timeout: Seconds = _env(10.0, "PROMPTDECK_MEDIA_FETCH_TIMEOUT")

    def __init__(self, **values: Any) -> None:
        """Keyword arguments (by field name) win over the environment."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError([_problem(error, values) for error in exc.errors()]) from None

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        if not self.database_url:  # frozen: set once, here, as the settings are made
            url = os.environ.get("PROMPTDECK_DATABASE_URL", "")  # also when database_url="" is given
            if not url:
                url = f"sqlite+aiosqlite:///{(self.data_dir / 'promptdeck.db').resolve()}"
            self.__dict__["database_url"] = url
        return self


def _variable(name: str) -> str:
    """The environment variable a field (or one of its variables) is read from."""
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return name


EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "greater_than": "a number above {gt:g}",
    "greater_than_equal": "a number of {ge:g} or more",
    "less_than_equal": "a number of at most {le:g}",
    "literal_error": "{expected}",
}


def _problem(error: ErrorDetails, given: dict[str, Any]) -> str:
    """`PROMPTDECK_PORT='abc': expected an integer` (a keyword argument is named as given)."""
    name = str(error["loc"][0]) if error["loc"] else "settings"
    where = name if name in given else _variable(name)
    if name == "port" or where == "PROMPTDECK_PORT":
        expected = "a port number from 1 to 65535"
        if error["type"] in ("int_parsing", "int_type", "int_from_float"):
            expected = "an integer"
    else:
        template = EXPECTED.get(error["type"])
        expected = template.format(**error.get("ctx", {})) if template else error["msg"]
    return f"{where}={error['input']!r}: expected {expected}"
