"""Settings from PROMPTDECK_* variables (config.py): defaults, the provider SDKs' own variables
as fallbacks, and a value a setting cannot use named in one line before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptdeck.cli import app
from promptdeck.config import Settings, SettingsError

FALLBACKS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("PROMPTDECK_") or name in FALLBACKS:
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_documented_defaults(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)
    settings = Settings()
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8400, Path(".promptdeck"))
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / '.promptdeck' / 'promptdeck.db'}"
    assert (settings.max_body_bytes, settings.cache_ttl_seconds, settings.local_context_tokens) == (
        1024 * 1024,
        10.0,
        2048,
    )
    assert (settings.upstream_connect_timeout, settings.upstream_read_timeout) == (5.0, 60.0)
    assert (settings.writer_batch_size, settings.writer_flush_seconds, settings.writer_queue_size) == (
        None,
        0.25,
        50_000,
    )
    assert settings.openai_api_key == settings.gemini_api_key == settings.azure_openai_endpoint == ""
    assert settings.azure_openai_api_version == "2024-10-21"


def test_variables_and_keyword_arguments(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("PROMPTDECK_PORT", "9000")
    clean_env.setenv("PROMPTDECK_CACHE_TTL", "2.5")
    clean_env.setenv("PROMPTDECK_LOCAL_CONTEXT", "4096")
    clean_env.setenv("PROMPTDECK_WRITER_BATCH_SIZE", "")  # set but empty: the database's default
    clean_env.setenv("PROMPTDECK_DATABASE_URL", "sqlite+aiosqlite://")
    settings = Settings()
    assert (settings.port, settings.cache_ttl_seconds, settings.local_context_tokens) == (9000, 2.5, 4096)
    assert (settings.writer_batch_size, settings.database_url) == (None, "sqlite+aiosqlite://")

    given = Settings(port=9001, data_dir=tmp_path, database_url="")  # keywords win over the variables
    assert given.port == 9001
    assert given.database_url == "sqlite+aiosqlite://"  # empty: PROMPTDECK_DATABASE_URL, as before
    with pytest.raises(ValueError):
        given.port = 1  # frozen


def test_the_provider_sdks_variables_are_fallbacks(clean_env: pytest.MonkeyPatch) -> None:
    for name in FALLBACKS:
        clean_env.setenv(name, name.lower())
    settings = Settings()
    assert settings.openai_api_key == "openai_api_key"
    assert settings.anthropic_api_key == "anthropic_api_key"
    assert settings.gemini_api_key == "gemini_api_key"  # before GOOGLE_API_KEY
    assert settings.azure_openai_endpoint == "azure_openai_endpoint"
    assert settings.azure_openai_api_key == "azure_openai_api_key"

    clean_env.delenv("GEMINI_API_KEY")
    assert Settings().gemini_api_key == "google_api_key"
    clean_env.setenv("PROMPTDECK_OPENAI_API_KEY", "")  # set, even empty: promptdeck's own wins
    clean_env.setenv("PROMPTDECK_GEMINI_API_KEY", "mine")
    assert (Settings().openai_api_key, Settings().gemini_api_key) == ("", "mine")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PROMPTDECK_PORT", "abc", "PROMPTDECK_PORT='abc': expected an integer"),
        ("PROMPTDECK_PORT", "0", "PROMPTDECK_PORT='0': expected a port number from 1 to 65535"),
        ("PROMPTDECK_PORT", "65536", "PROMPTDECK_PORT='65536': expected a port number from 1 to 65535"),
        ("PROMPTDECK_BODY_TIMEOUT", "-1", "PROMPTDECK_BODY_TIMEOUT='-1': expected a number above 0"),
        ("PROMPTDECK_CACHE_TTL", "soon", "PROMPTDECK_CACHE_TTL='soon': expected a number"),
        (
            "PROMPTDECK_WRITER_BATCH_SIZE",
            "0",
            "PROMPTDECK_WRITER_BATCH_SIZE='0': expected a number of 1 or more",
        ),
    ],
)
def test_an_unusable_value_is_named_with_what_is_expected(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        Settings()
    assert raised.value.problems == [message]


def test_every_unusable_value_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PROMPTDECK_PORT", "abc")
    clean_env.setenv("PROMPTDECK_UPSTREAM_READ_TIMEOUT", "0")
    with pytest.raises(SettingsError) as raised:
        Settings()
    assert raised.value.problems == [
        "PROMPTDECK_PORT='abc': expected an integer",
        "PROMPTDECK_UPSTREAM_READ_TIMEOUT='0': expected a number above 0",
    ]


def test_the_cli_prints_the_problem_and_exits_2(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PROMPTDECK_PORT", "abc")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "PROMPTDECK_PORT='abc': expected an integer" in result.output
    assert "Traceback" not in result.output


def test_the_console_script_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PROMPTDECK_DATA_DIR": str(tmp_path), "PROMPTDECK_PORT": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "promptdeck.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    assert done.stderr.strip() == "error: PROMPTDECK_PORT='abc': expected an integer"
    assert "Traceback" not in done.stderr + done.stdout
