"""Settings, read once from PROMPTDECK_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _optional_int(name: str) -> int | None:
    """An integer setting whose default depends on something only known later (the database)."""
    value = _env(name, "")
    return int(value) if value else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("PROMPTDECK_DATA_DIR", ".promptdeck")))
    database_url: str = ""
    host: str = field(default_factory=lambda: _env("PROMPTDECK_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _int("PROMPTDECK_PORT", 8400))
    max_body_bytes: int = field(default_factory=lambda: _int("PROMPTDECK_MAX_BODY_BYTES", 1024 * 1024))
    cache_ttl_seconds: float = field(default_factory=lambda: _float("PROMPTDECK_CACHE_TTL", 10.0))
    # Per cache (API keys, deployments, credentials): found entries, and unknown keys or names.
    cache_max_entries: int = field(default_factory=lambda: _int("PROMPTDECK_CACHE_MAX_ENTRIES", 10_000))
    cache_max_misses: int = field(default_factory=lambda: _int("PROMPTDECK_CACHE_MAX_MISSES", 1_000))
    # Slow or idle clients (docs/deploy.md): all request headers within `header_timeout`; at most
    # `body_timeout` between two pieces of a body, and `body_min_rate` bytes/s after its first
    # `body_timeout`; an idle keep-alive connection `idle_timeout`.
    header_timeout: float = field(default_factory=lambda: _float("PROMPTDECK_HEADER_TIMEOUT", 10.0))
    body_timeout: float = field(default_factory=lambda: _float("PROMPTDECK_BODY_TIMEOUT", 20.0))
    body_min_rate: float = field(default_factory=lambda: _float("PROMPTDECK_BODY_MIN_RATE", 500.0))
    idle_timeout: int = field(default_factory=lambda: _int("PROMPTDECK_IDLE_TIMEOUT", 5))
    max_connections: int = field(default_factory=lambda: _int("PROMPTDECK_MAX_CONNECTIONS", 4096))
    backlog: int = field(default_factory=lambda: _int("PROMPTDECK_BACKLOG", 2048))
    keepalive_seconds: float = field(default_factory=lambda: _float("PROMPTDECK_KEEPALIVE_SECONDS", 15.0))
    local_model_path: str = field(default_factory=lambda: _env("PROMPTDECK_LOCAL_MODEL_PATH", ""))
    local_context_tokens: int = field(default_factory=lambda: _int("PROMPTDECK_LOCAL_CONTEXT", 2048))
    openai_base_url: str = field(
        default_factory=lambda: _env("PROMPTDECK_OPENAI_BASE_URL", "https://api.openai.com/v1")
    )
    openai_api_key: str = field(
        default_factory=lambda: _env("PROMPTDECK_OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY", ""))
    )
    anthropic_base_url: str = field(
        default_factory=lambda: _env("PROMPTDECK_ANTHROPIC_BASE_URL", "https://api.anthropic.com")
    )
    anthropic_api_key: str = field(
        default_factory=lambda: _env("PROMPTDECK_ANTHROPIC_API_KEY", os.environ.get("ANTHROPIC_API_KEY", ""))
    )
    gemini_base_url: str = field(
        default_factory=lambda: _env(
            "PROMPTDECK_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com"
        )
    )
    gemini_api_key: str = field(
        default_factory=lambda: _env(
            "PROMPTDECK_GEMINI_API_KEY",
            os.environ.get("GEMINI_API_KEY", os.environ.get("GOOGLE_API_KEY", "")),
        )
    )
    azure_openai_endpoint: str = field(
        default_factory=lambda: _env(
            "PROMPTDECK_AZURE_OPENAI_ENDPOINT", os.environ.get("AZURE_OPENAI_ENDPOINT", "")
        )
    )
    azure_openai_api_key: str = field(
        default_factory=lambda: _env(
            "PROMPTDECK_AZURE_OPENAI_API_KEY", os.environ.get("AZURE_OPENAI_API_KEY", "")
        )
    )
    azure_openai_api_version: str = field(
        default_factory=lambda: _env("PROMPTDECK_AZURE_OPENAI_API_VERSION", "2024-10-21")
    )
    secret_key: str = field(default_factory=lambda: _env("PROMPTDECK_SECRET_KEY", ""))
    upstreams: str = field(default_factory=lambda: _env("PROMPTDECK_UPSTREAMS", ""))
    # Base URLs a caller's raw_overrides.url may point at (comma-separated); none by default.
    raw_override_urls: str = field(default_factory=lambda: _env("PROMPTDECK_RAW_OVERRIDE_URLS", ""))
    upstream_connect_timeout: float = field(
        default_factory=lambda: _float("PROMPTDECK_UPSTREAM_CONNECT_TIMEOUT", 5.0)
    )
    upstream_read_timeout: float = field(
        default_factory=lambda: _float("PROMPTDECK_UPSTREAM_READ_TIMEOUT", 60.0)
    )
    upstream_total_timeout: float = field(
        default_factory=lambda: _float("PROMPTDECK_UPSTREAM_TOTAL_TIMEOUT", 300.0)
    )
    # unset: the run writer's default for the database (store/run_writer.py BATCH_SIZES)
    writer_batch_size: int | None = field(
        default_factory=lambda: _optional_int("PROMPTDECK_WRITER_BATCH_SIZE")
    )
    writer_flush_seconds: float = field(
        default_factory=lambda: _float("PROMPTDECK_WRITER_FLUSH_SECONDS", 0.25)
    )
    writer_queue_size: int = field(default_factory=lambda: _int("PROMPTDECK_WRITER_QUEUE_SIZE", 50_000))

    def __post_init__(self) -> None:
        if not self.database_url:
            url = _env("PROMPTDECK_DATABASE_URL", "")
            if not url:
                url = f"sqlite+aiosqlite:///{(self.data_dir / 'promptdeck.db').resolve()}"
            object.__setattr__(self, "database_url", url)
