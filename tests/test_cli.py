"""The real `promptdeck` console script, run as a subprocess against a temporary database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from tests.conftest import Deck, make_settings
from tests.support.live_server import LiveServer, start_server
from tests.support.postgres import free_port

PROMPTDECK = Path(sys.executable).with_name("promptdeck")
TEXT = "The quick brown fox jumps over the lazy dog while the farmer sleeps."

GREET = """\
prompt: greet
model: local/smollm2-135m-instruct
params: {{temperature: 0.0, max_tokens: 2}}
messages:
  - role: system
    content: {system}
  - role: user
    content: "Greet {{{{name}}}}"
deploy:
  greet: {{default: latest}}
"""


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any PROMPTDECK_* setting of its own, pointed at `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTDECK_") and k != "COLUMNS"}
    env["PROMPTDECK_DATA_DIR"] = str(data_dir)
    env["PROMPTDECK_DATABASE_URL"] = f"sqlite:///{data_dir / 'promptdeck.db'}"
    return env | extra


def promptdeck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert PROMPTDECK.exists(), f"the console script is not installed at {PROMPTDECK}"
    return subprocess.run(
        [str(PROMPTDECK), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def succeeds(env: dict[str, str], *args: str) -> str:
    result = promptdeck(env, *args)
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


def fails(env: dict[str, str], *args: str) -> str:
    """Exit code 1 and nothing on stdout; returns stderr."""
    result = promptdeck(env, *args)
    assert result.returncode == 1, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr


def init_key(env: dict[str, str]) -> str:
    out = succeeds(env, "init", "--json")
    assert out.count("\n") == 1
    key = json.loads(out)["api_key"]
    assert isinstance(key, str) and key.startswith("pd_")
    return key


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(data_dir: Path) -> Iterator[tuple[LiveServer, str]]:
    """`promptdeck init` run for real, then a live server over the same database; yields it and the key."""
    key = init_key(cli_env(data_dir))
    settings = make_settings(f"sqlite+aiosqlite:///{data_dir / 'promptdeck.db'}", data_dir)
    live = start_server(settings)
    yield live, key
    live.stop()


def test_init_prints_an_admin_key_and_is_safe_to_run_twice(data_dir: Path) -> None:
    env = cli_env(data_dir)
    first, second = init_key(env), init_key(env)
    assert first != second
    human = succeeds(env, "init")
    assert "Admin API key (shown once): pd_" in human
    assert f"Database ready: sqlite:///{data_dir / 'promptdeck.db'}" in human

    with sqlite3.connect(data_dir / "promptdeck.db") as db:
        assert db.execute("SELECT count(*) FROM workspaces").fetchone() == (1,)
        keys = db.execute("SELECT DISTINCT workspace_id, scopes FROM api_keys").fetchall()
        stored = [prefix for (prefix,) in db.execute("SELECT prefix FROM api_keys ORDER BY created_at")]
    assert len(keys) == 1 and keys[0][1] == "admin"
    assert stored[:2] == [first[:10], second[:10]] and len(stored) == 3


def test_push_prints_what_changed_and_is_idempotent(
    server: tuple[LiveServer, str], data_dir: Path, tmp_path: Path
) -> None:
    live, key = server
    env = cli_env(data_dir, PROMPTDECK_URL=live.url, PROMPTDECK_API_KEY=key)
    file = tmp_path / "greet.yaml"
    file.write_text(GREET.format(system="Be brief."))

    assert succeeds(env, "push", str(file)).splitlines() == [
        "prompt greet: created",
        "version 1: created",
        "greet@default -> version 1: created",
    ]
    assert succeeds(env, "push", str(file)).splitlines() == [
        "prompt greet: exists",
        "version 1: unchanged",
        "greet@default -> version 1: unchanged",
    ]
    report = json.loads(succeeds(env, "push", "--json", str(file)))
    assert report["changed"] is False and report["version"] == 1 and report["prompt"] == "greet"

    file.write_text(GREET.format(system="Be very brief."))
    assert succeeds(env, "push", str(file)).splitlines()[-1] == "greet@default -> version 2: moved"
    file.write_text(GREET.format(system="Be very, very brief."))
    report = json.loads(succeeds(env, "push", "--json", str(file)))
    assert report["changed"] is True and report["version_created"] is True and report["version"] == 3
    assert report["variants"] == [
        {
            "deployment": "greet",
            "variant": "default",
            "version": 3,
            "changed": True,
            "from_version": 2,
            "follows_latest": False,
            "check": ANY,  # the release check's report
        }
    ]

    # a second `init` is a second key to the same workspace: it sees what the first one pushed
    other = cli_env(data_dir, PROMPTDECK_URL=live.url, PROMPTDECK_API_KEY=init_key(cli_env(data_dir)))
    assert "version 3: unchanged" in succeeds(other, "push", str(file)).splitlines()


def test_an_invalid_prompt_file_names_file_line_and_field(data_dir: Path, tmp_path: Path) -> None:
    """Checked before any server is contacted; the message stays on one line whatever its length."""
    env = cli_env(data_dir, PROMPTDECK_URL=f"http://127.0.0.1:{free_port()}", PROMPTDECK_API_KEY="pd_x")
    folder = tmp_path / ("a-folder-with-a-long-name-" * 3)
    folder.mkdir()
    file = folder / "greet.yaml"
    file.write_text(GREET.format(system="Hi").replace("  - role: user\n", "  - role: '[bold]robot'\n"))
    stderr = fails(env, "push", str(file))
    assert (
        f"error: {file}:7: messages[1].role: expected one of system, user, assistant; got '[bold]robot'\n"
        in stderr
    )

    file.write_text(GREET.format(system="Hi").replace("  - role: user\n", "  - role: user\n   oops: x\n"))
    assert f"{file}:8: not valid YAML" in fails(env, "push", str(file))

    file.write_text(GREET.format(system="Hi") + "tempreature: 1\n")
    assert f"{file}:11: tempreature: unknown field" in fails(env, "push", str(file))


def test_invoke_prints_the_answer_streamed_or_not(sqlite_deck: Deck, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path / "unused", PROMPTDECK_URL=sqlite_deck.url, PROMPTDECK_API_KEY=sqlite_deck.admin_key
    )
    answer = succeeds(env, "invoke", "summarize", "--input", f"text={TEXT}")
    streamed = succeeds(env, "invoke", "summarize", "--variant", "short", "-i", f"text={TEXT}", "--stream")
    assert answer.strip() and answer.endswith("\n")
    assert streamed == answer  # temperature 0 and a fixed seed: the same text either way

    runs = sqlite_deck.runs()
    assert [(r["variant"], r["streamed"], r["status"]) for r in runs] == [
        ("short", True, "success"),
        ("default", False, "success"),
    ]
    assert runs[1]["output"] + "\n" == answer
    assert runs[1]["inputs"] == {"text": TEXT}


def test_invoke_reports_the_servers_message(sqlite_deck: Deck, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path / "unused", PROMPTDECK_URL=sqlite_deck.url, PROMPTDECK_API_KEY=sqlite_deck.admin_key
    )
    message = "error: the server answered 404: no deployment named 'nope'"
    assert message in fails(env, "invoke", "nope", "--input", "text=x")
    assert message in fails(env, "invoke", "nope", "--input", "text=x", "--stream")
    assert "the server answered 422: missing required input: text" in fails(env, "invoke", "summarize")
    assert "an input is name=value; got 'text'" in fails(env, "invoke", "summarize", "--input", "text")
    assert "the value of 'text' is not JSON" in fails(env, "invoke", "summarize", "--json-input", "text={")

    wrong_key = env | {"PROMPTDECK_API_KEY": "pd_not-a-key"}
    assert "the server answered 401: Invalid access." in fails(
        wrong_key, "invoke", "summarize", "-i", "text=x"
    )


def test_a_missing_api_key_or_server_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = cli_env(data_dir, PROMPTDECK_URL=url)
    file = tmp_path / "greet.yaml"
    file.write_text(GREET.format(system="Hi"))
    for args in (("invoke", "summarize", "-i", "text=x"), ("push", str(file)), ("history", "d", "v")):
        assert "error: set PROMPTDECK_API_KEY" in fails(env, *args)
        unreachable = fails(env | {"PROMPTDECK_API_KEY": "pd_x"}, *args)
        assert f"error: cannot reach the server at {url} (PROMPTDECK_URL): " in unreachable


HEAVY_MODULES = (
    "asyncio",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic_settings",
    "httpx",
    "sqlalchemy",
    "alembic",
    "jinja2",
    "jsonschema",
    "yaml",
    "llama_cpp",
    "promptdeck.app",
    "promptdeck.config",
    "promptdeck.services",
    "promptdeck.serving",
)


def test_help_imports_nothing_a_command_does_not_need() -> None:
    """Each command is a new process: `--help` must not pay for the server, the settings, the
    database or the model (python -X importtime lists every module a run imports)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "promptdeck", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Usage: python -m promptdeck" in result.stdout and "split" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "promptdeck.cli" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY_MODULES or m in HEAVY_MODULES)
    assert heavy == [], f"`promptdeck --help` imports {heavy}"


def test_prune_applies_each_workspaces_retention(data_dir: Path) -> None:
    env = cli_env(data_dir)
    init_key(env)
    assert json.loads(succeeds(env, "prune", "--json")) == {"deleted": {}}  # no retention period set
    with sqlite3.connect(data_dir / "promptdeck.db") as db:
        (workspace_id,) = db.execute("SELECT id FROM workspaces").fetchone()
        db.execute("UPDATE workspaces SET retention_days = 7")
        db.execute(
            "INSERT INTO runs (id, request_id, workspace_id, dialect, deployment, streamed, output,"
            " reasoning, input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens,"
            " reasoning_tokens, duration_ms, status, created_at)"
            " VALUES ('r1', 'req_r1', ?, 'fetchhive', 'd', 0, '', '',"
            " 0, 0, 0, 0, 0, 1.0, 'success', '2020-01-01 00:00:00.000000')",
            (workspace_id,),
        )
    assert json.loads(succeeds(env, "prune", "--json", "--batch-size", "10")) == {
        "deleted": {workspace_id: 1}
    }
    assert "pruned 0 run(s) in 1 workspace(s)" in succeeds(env, "prune")
