"""`promptdeck dataset ...` of the real console script against a live server: import (JSONL and
CSV; a bad file printed line by line, exit 1, nothing imported), list, show, export, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Deck
from tests.test_cli import cli_env, promptdeck, succeeds


@pytest.fixture
def env(sqlite_deck: Deck, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment, pointed at a live server with the example deployment."""
    return cli_env(
        tmp_path / "unused",
        PROMPTDECK_URL=sqlite_deck.url,
        PROMPTDECK_API_KEY=sqlite_deck.admin_key,
        COLUMNS="200",
    )


def test_import_list_show_export_delete(env: dict[str, str], tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"inputs": {"text": "a"}, "expected": "A"}\n{"inputs": {"text": "b"}, "tags": ["t"]}\n')
    assert "created dataset smoke" in succeeds(env, "dataset", "import", "summarize", "smoke", str(cases))
    table = tmp_path / "more.csv"
    table.write_text("text,expected,tags\nc,C,x;y\n")
    assert "smoke holds 3" in succeeds(env, "dataset", "import", "summarize", "smoke", str(table))

    listed = succeeds(env, "dataset", "list", "summarize")
    assert "smoke" in listed and "3" in listed
    shown = succeeds(env, "dataset", "show", "summarize", "smoke")
    assert '{"text": "c"}' in shown and "x, y" in shown

    exported = tmp_path / "out.jsonl"
    succeeds(env, "dataset", "export", "summarize", "smoke", str(exported))
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert lines[2] == {"inputs": {"text": "c"}, "expected": "C", "tags": ["x", "y"]}
    assert succeeds(env, "dataset", "export", "summarize", "smoke") == exported.read_text()

    replaced = succeeds(env, "dataset", "import", "summarize", "smoke", str(cases), "--replace")
    assert "smoke holds 2" in replaced
    succeeds(env, "dataset", "create", "summarize", "empty", "--description", "later")
    assert "deleted" in succeeds(env, "dataset", "delete", "summarize", "empty")
    assert "empty" not in succeeds(env, "dataset", "list", "summarize")


def test_a_bad_file_prints_every_problem_and_imports_nothing(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": {"text": "ok"}}\n{"inputs": 5}\n{nope\n{"inputs": {}, "tags": [1]}\n')
    result = promptdeck(env, "dataset", "import", "summarize", "smoke", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{bad}: line 2: `inputs` must be an object" in result.stderr
    assert f"{bad}: line 3: not valid JSON" in result.stderr
    assert f"{bad}: line 4: `tags` must be a list of strings" in result.stderr
    assert "was not imported" in result.stderr
    assert "smoke" not in succeeds(env, "dataset", "list", "summarize")  # not even created
    wrong = tmp_path / "cases.txt"
    wrong.write_text("x")
    assert (
        "expected a .jsonl or .csv file"
        in promptdeck(env, "dataset", "import", "summarize", "s", str(wrong)).stderr
    )


def test_create_takes_evaluators_and_refuses_bad_ones(env: dict[str, str]) -> None:
    succeeds(
        env,
        "dataset",
        "create",
        "summarize",
        "judged",
        "--evaluator",
        '{"type": "contains", "value": "cat"}',
        "-e",
        '{"type": "length", "max_length": 200}',
    )
    assert "contains, length" in succeeds(env, "dataset", "list", "summarize")

    not_json = promptdeck(env, "dataset", "create", "summarize", "other", "-e", "{type: contains")
    assert not_json.returncode == 1 and "is not JSON" in not_json.stderr
    bad_regex = promptdeck(
        env, "dataset", "create", "summarize", "other", "-e", '{"type": "regex", "pattern": "("}'
    )
    assert bad_regex.returncode == 1 and "evaluators[0]: regex" in bad_regex.stderr
    assert "other" not in succeeds(env, "dataset", "list", "summarize")
