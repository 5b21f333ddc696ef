"""Prompts as code both ways: `push` of folders, `pull`, conflicts, `--dry-run`, and workspace
export / import — the real console script against live servers."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.live_server import LiveServer, start_server
from tests.test_cli import cli_env, fails, init_key, succeeds

GREET = """\
prompt: greet
model: local/smollm2-135m-instruct
params: {{temperature: 0.0, max_tokens: 2}}
messages:
  - role: system
    content: "{system}"
  - role: user
    content: "Greet {{{{name}}}}"
deploy:
  greet: {{default: latest, stable: 1}}
"""

SUMMARIZE = """\
prompt: summarize
name: Summarizer
description: One sentence.
note: first cut
model: local/smollm2-135m-instruct
params: {max_tokens: 24, temperature: 0.2}
messages:
  - role: system
    content: |
      You summarize text.
      One sentence, no more.
  - {role: user, content: "Summarize: {{text}} in {{ language }}"}
inputs:
  language: {type: string, default: English, description: Language of the answer}
tools:
  - name: lookup
    description: Look a word up
    parameters: {type: object, properties: {word: {type: string}}}
deploy:
  summarize: {prod: latest}
  summarize-beta: {beta: latest}
"""


def start(data_dir: Path) -> tuple[LiveServer, dict[str, str]]:
    key = init_key(cli_env(data_dir))
    live = start_server(make_settings(f"sqlite+aiosqlite:///{data_dir / 'promptdeck.db'}", data_dir))
    return live, cli_env(data_dir, PROMPTDECK_URL=live.url, PROMPTDECK_API_KEY=key)


@pytest.fixture
def deck(tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    live, env = start(tmp_path / "data")
    yield live, env
    live.stop()


def get(env: dict[str, str], path: str) -> Any:
    headers = {"Authorization": f"Bearer {env['PROMPTDECK_API_KEY']}"}
    response = httpx.get(env["PROMPTDECK_URL"] + path, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()


def state(env: dict[str, str]) -> dict[str, Any]:
    """Everything a push may change: versions (number, hash) and variants (pointer, config, history)."""
    result: dict[str, Any] = {}
    for prompt in get(env, "/api/prompts")["data"]:
        versions = get(env, f"/api/prompts/{prompt['slug']}/versions")["data"]
        result[prompt["slug"]] = [(v["number"], v["model"], v["messages"], v["inputs"]) for v in versions]
    for deployment in get(env, "/api/deployments")["data"]:
        for name, variant in deployment["variants"].items():
            history = get(env, f"/api/deployments/{deployment['name']}/variants/{name}/history")["data"]
            result[f"{deployment['name']}@{name}"] = (variant["version"], variant["config"], len(history))
    return result


def write(folder: Path, name: str, text: str) -> Path:
    file = folder / name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return file


def test_push_of_a_folder_applies_every_file_in_order(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    _, env = deck
    folder = tmp_path / "prompts"
    write(folder, "b/greet.yml", GREET.format(system="Be brief."))
    write(folder, "a-summarize.yaml", SUMMARIZE)
    write(folder, "README.md", "not a prompt file")

    lines = succeeds(env, "push", str(folder)).splitlines()
    assert lines == [
        f"{folder / 'a-summarize.yaml'}:",
        "  prompt summarize: created",
        "  version 1: created",
        "  summarize@prod -> version 1: created",
        "  summarize-beta@beta -> version 1: created",
        f"{folder / 'b/greet.yml'}:",
        "  prompt greet: created",
        "  version 1: created",
        "  greet@default -> version 1: created",
        "  greet@stable -> version 1: created",
    ]
    report = json.loads(succeeds(env, "push", "--json", str(folder)))
    assert report["changed"] is False and [r["prompt"] for r in report["reports"]] == ["summarize", "greet"]


def test_a_bad_file_in_a_folder_pushes_nothing(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    _, env = deck
    folder = tmp_path / "prompts"
    write(folder, "a.yaml", SUMMARIZE)
    bad = write(folder, "b.yaml", GREET.format(system="x").replace("stable: 1", "stable: 7"))
    stderr = fails(env, "push", str(folder))
    assert f"error: the server answered 404: {bad}: prompt 'greet' has no version 7" in stderr
    assert get(env, "/api/prompts")["data"] == []  # the first file was not applied either


def test_push_pull_push_changes_nothing_and_pull_is_byte_stable(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    _, env = deck
    source = tmp_path / "source"
    write(source, "summarize.yaml", SUMMARIZE)
    write(source, "greet.yaml", GREET.format(system="Be brief."))
    succeeds(env, "push", str(source))
    write(source, "greet.yaml", GREET.format(system="Be very brief: 'quotes', #hash, ünïcode."))
    succeeds(env, "push", str(source))  # greet version 2: default moves to it, stable stays on 1
    before = state(env)

    pulled = tmp_path / "pulled"
    assert succeeds(env, "pull", str(pulled)).splitlines() == [
        f"{pulled / 'greet.yaml'}: version 2",
        f"{pulled / 'summarize.yaml'}: version 1",
    ]
    greet = (pulled / "greet.yaml").read_text()
    assert greet.startswith("prompt: greet\nversion: 2\nmodel: local/smollm2-135m-instruct\n")
    assert greet.endswith("deploy:\n  greet:\n    default: 2\n    stable: 1\n")  # numbers only
    summarize = (pulled / "summarize.yaml").read_text()
    assert "  content: |\n    You summarize text.\n    One sentence, no more.\n" in summarize
    assert "name: Summarizer\ndescription: One sentence.\n" in summarize
    assert "deploy:\n  summarize:\n    prod: 1\n  summarize-beta:\n    beta: 1\n" in summarize

    report = json.loads(succeeds(env, "push", "--json", str(pulled)))
    assert report["changed"] is False
    assert state(env) == before  # no version, no move, no config change

    first = {p.name: p.read_bytes() for p in pulled.iterdir()}
    succeeds(env, "pull", str(pulled))
    assert {p.name: p.read_bytes() for p in pulled.iterdir()} == first


def test_a_push_over_a_newer_version_is_refused_unless_forced(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    _, env = deck
    write(tmp_path / "first", "greet.yaml", GREET.format(system="Hi."))
    succeeds(env, "push", str(tmp_path / "first" / "greet.yaml"))
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    succeeds(env, "pull", str(mine))
    succeeds(env, "pull", str(theirs))
    file = mine / "greet.yaml"
    assert "version: 1\n" in file.read_text()

    (theirs / "greet.yaml").write_text((theirs / "greet.yaml").read_text().replace("Hi.", "Hello."))
    assert "version 2: created" in succeeds(env, "push", str(theirs))

    file.write_text(file.read_text().replace("Hi.", "Hey."))
    before = state(env)
    stderr = fails(env, "push", str(file))
    assert (
        "the server answered 409: prompt 'greet' has version 2 on the server, newer than the version 1"
        in stderr
    )
    assert "409" in fails(env, "push", str(mine))  # in a folder too
    assert state(env) == before

    assert "version 3: created" in succeeds(env, "push", "--force", str(file))
    # an unchanged file is not a conflict: the server already has what it says
    assert "version 3: unchanged" in succeeds(env, "push", str(file))


def test_dry_run_prints_the_plan_and_changes_nothing(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    _, env = deck
    file = write(tmp_path, "greet.yaml", GREET.format(system="Hi.").replace(", stable: 1", ""))
    assert succeeds(env, "push", "--dry-run", str(file)).splitlines() == [
        "prompt greet: will be created",
        "version 1: will be created",
        "greet@default: will be created at version 1, passes the release check",
        "dry run: nothing was changed",
    ]
    assert state(env) == {}

    succeeds(env, "push", str(file))
    file.write_text(
        GREET.format(system="Hello.").replace("default: latest, stable: 1", "default: 1, new: latest")
    )
    before = state(env)
    assert succeeds(env, "push", "--dry-run", str(file)).splitlines() == [
        "prompt greet: exists",
        "version 2: will be created",
        "greet@default -> version 1: unchanged",
        "greet@new: will be created at version 2, passes the release check",
        "dry run: nothing was changed",
    ]
    assert state(env) == before
    report = json.loads(succeeds(env, "push", "--dry-run", "--json", str(tmp_path)))
    assert report["dry_run"] is True and report["changed"] is True
    assert state(env) == before

    file.write_text(GREET.format(system="Hello.").replace("default: latest, stable: 1", "default: latest"))
    succeeds(env, "push", str(file))  # version 2
    file.write_text(GREET.format(system="Hello.").replace("default: latest, stable: 1", "default: 1"))
    assert "greet@default: will move from version 2 to 1" in succeeds(env, "push", "--dry-run", str(file))


def test_a_push_lists_the_variants_that_follow_latest_and_move_with_it(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    """A new version moves every variant that follows `latest`, other deployments' too: the
    plan and the report say so, not only the moves the file names (they used to be silent)."""
    _, env = deck
    file = write(tmp_path, "greet.yaml", GREET.format(system="Hi.").replace(", stable: 1", ""))
    succeeds(env, "push", str(file))
    succeeds(env, "move", "greet", "default", "latest")  # following is an explicit choice
    file.write_text(
        GREET.format(system="Hello.").replace("greet: {default: latest, stable: 1}", "greet-beta: {beta: 1}")
    )
    before = state(env)
    assert succeeds(env, "push", "--dry-run", str(file)).splitlines() == [
        "prompt greet: exists",
        "version 2: will be created",
        "greet-beta@beta: will be created at version 1, passes the release check",
        "greet@default: will move from version 1 to 2 (follows latest), passes the release check",
        "dry run: nothing was changed",
    ]
    assert state(env) == before
    assert (
        succeeds(env, "push", str(file)).splitlines()[-1]
        == "greet@default -> version 2: moved (follows latest)"
    )
    report = json.loads(succeeds(env, "push", "--json", str(file)))
    assert report["changed"] is False and report["variants"][-1]["deployment"] == "greet-beta"


def test_export_then_import_into_a_fresh_database_reproduces_the_workspace(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    live, env = deck
    folder = tmp_path / "prompts"
    write(folder, "summarize.yaml", SUMMARIZE)
    write(folder, "greet.yaml", GREET.format(system="Hi."))
    succeeds(env, "push", str(folder))
    write(folder, "greet.yaml", GREET.format(system="Hello."))
    succeeds(env, "push", str(folder))
    headers = {"Authorization": f"Bearer {env['PROMPTDECK_API_KEY']}"}
    config = {
        "timeouts": {"total": 30},
        "retries": {"max_attempts": 2},
        "fallbacks": [{"model": "local/smollm2-135m-instruct", "version": 2}],
    }
    httpx.put(
        f"{live.url}/api/deployments/greet/variants/stable/config", json=config, headers=headers
    ).raise_for_status()

    archive = tmp_path / "workspace.tar.gz"
    assert "exported the workspace" in succeeds(env, "export", str(archive))
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["workspace.json"]
        data = json.loads(tar.extractfile("workspace.json").read())  # type: ignore[union-attr]
    assert "runs" not in data and "keys" not in json.dumps(data)

    other, other_env = start(tmp_path / "other")
    try:
        out = succeeds(other_env, "import", str(archive))
        assert out == "imported 2 prompt(s), 3 version(s), 3 deployment(s), 4 variant(s)\n"

        def snapshot(e: dict[str, str]) -> Any:
            versions = {
                p["slug"]: [
                    (
                        v["number"],
                        v["note"],
                        v["author"],
                        v["created_at"],
                        v["messages"],
                        v.get("tools"),
                    )
                    for v in get(e, f"/api/prompts/{p['slug']}/versions")["data"]
                ]
                for p in get(e, "/api/prompts")["data"]
            }
            prompts = [
                (p["slug"], p["name"], p["description"], p["latest_version"])
                for p in get(e, "/api/prompts")["data"]
            ]
            deployments = [
                (
                    d["name"],
                    d["default_variant"],
                    {n: (v["version"], v["config"]) for n, v in d["variants"].items()},
                )
                for d in get(e, "/api/deployments")["data"]
            ]
            return versions, prompts, deployments

        assert snapshot(other_env) == snapshot(env)
        with tarfile.open(archive) as tar:
            original = json.loads(tar.extractfile("workspace.json").read())  # type: ignore[union-attr]
        again = tmp_path / "again.tar.gz"
        succeeds(other_env, "export", str(again))
        assert again.read_bytes() == archive.read_bytes()  # same hashes, numbers, pointers, configs
        assert original["prompts"][0]["versions"][0]["content_hash"]

        # the imported variants still follow latest, and the pinned one stays pinned
        write(folder, "greet.yaml", GREET.format(system="Howdy."))
        succeeds(other_env, "push", str(folder / "greet.yaml"))
        greet = get(other_env, "/api/deployments/greet")["variants"]
        assert (greet["default"]["version"], greet["stable"]["version"]) == (3, 1)

        # importing again is refused: those names exist; nothing is imported
        stderr = fails(other_env, "import", str(archive))
        assert "409: the workspace already has prompt 'greet', prompt 'summarize'" in stderr
    finally:
        other.stop()


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_a_bad_archive_is_a_clear_error_and_imports_nothing(
    deck: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    _, env = deck
    write(tmp_path / "p", "summarize.yaml", SUMMARIZE)
    write(tmp_path / "p", "greet.yaml", GREET.format(system="Hi."))
    succeeds(env, "push", str(tmp_path / "p"))
    good = tmp_path / "good.tar.gz"
    succeeds(env, "export", str(good))
    with tarfile.open(good) as tar:
        data = json.loads(tar.extractfile("workspace.json").read())  # type: ignore[union-attr]

    other, other_env = start(tmp_path / "other")
    try:
        cases: list[tuple[bytes, str]] = [
            (b"not an archive", "not a promptdeck workspace archive: not a readable .tar.gz"),
            (_tar({"other.json": b"{}"}), "it has no workspace.json"),
            (_tar({"workspace.json": b"{"}), "workspace.json is not JSON"),
            (_tar({"workspace.json": b'{"format": "zip"}'}), "is not a promptdeck-workspace document"),
        ]
        tampered = json.loads(json.dumps(data))
        tampered["prompts"][0]["versions"][0]["content"]["model"] = "local/other"
        cases.append(
            (_tar({"workspace.json": json.dumps(tampered).encode()}), "does not match its content_hash")
        )
        dangling = json.loads(json.dumps(data))
        dangling["deployments"][-1]["variants"]["beta"]["version"] = 9
        cases.append((_tar({"workspace.json": json.dumps(dangling).encode()}), "points at no version"))
        for body, message in cases:
            bad = tmp_path / "bad.tar.gz"
            bad.write_bytes(body)
            stderr = fails(other_env, "import", str(bad))
            assert "the server answered 422" in stderr and message in stderr, stderr
            assert get(other_env, "/api/prompts")["data"] == []
            assert get(other_env, "/api/deployments")["data"] == []
    finally:
        other.stop()
