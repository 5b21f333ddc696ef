"""The deployment code snippets (`promptdeck.web.snippets`), generated for a live server and
then run as a user would run them: the Python ones in a subprocess, curl in a shell, the
JavaScript one in headless Chromium. Each run must reach the run log with the deployment,
variant, inputs, metadata and end user the snippet sends.

Self-contained: it uses tests/conftest.py and tests/support/ only, not this folder's conftest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from promptdeck.domain.prompts import InputSpec
from promptdeck.web.snippets import KEY_TO_FILL_IN, Snippet, example_inputs, snippets
from tests.conftest import IN_CI, Deck
from tests.support.browser import launch_chromium
from tests.support.fake_openai import FakeOpenAI, Script, deck_over, sqlite_url

ANSWER = ("Hello", ", ", "world", "!")
PYTHON_SNIPPETS = ("python-fetch-hive", "python-vellum", "python-openai")
DIALECTS = {
    "curl": "fetchhive",
    "python-fetch-hive": "fetchhive",
    "python-vellum": "vellum",
    "python-openai": "openai",
    "js-fetch": "fetchhive",
}


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    """A live server (SQLite) whose deployment `fast` (variants `default` and `beta`; inputs
    `text` and `audience`) is answered by a fake upstream streaming its answer in four pieces."""
    directory: Path = tmp_path_factory.mktemp("snippets")
    with FakeOpenAI() as upstream, deck_over(upstream.url, sqlite_url(directory), directory) as deck:
        upstream.scripts["fast"] = Script(chunks=ANSWER, delay=0.05)
        yield deck


def declared_inputs(deck: Deck) -> dict[str, Any]:
    """Example values for the inputs of the version `fast@beta` serves, as the console gets them."""
    with deck.client() as client:
        variant = client.get("/api/deployments/fast").json()["variants"]["beta"]
        version = client.get(f"/api/prompts/{variant['prompt']}/versions/{variant['version']}").json()
    return example_inputs({name: InputSpec(**decl) for name, decl in version["inputs"].items()})


def generate(deck: Deck, tag: str, variant: str | None = "beta") -> dict[str, Snippet]:
    """The snippets for `fast` at `variant`, with metadata that finds their runs again."""
    made = snippets(
        deck.url,
        "fast",
        variant,
        declared_inputs(deck),
        default_variant="default",
        metadata={"environment": "test", "snippet": tag},
    )
    return {snippet.id: snippet for snippet in made}


def logged(deck: Deck, tag: str) -> dict[str, Any]:
    """The one run whose metadata says it came from the snippet run under `tag`."""
    deadline = time.monotonic() + 10
    while True:
        deck.flush()
        with deck.client() as client:
            found = client.get("/api/runs", params={"meta": f"snippet:{tag}"}).json()["data"]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return dict(found[0])
        time.sleep(0.1)


def check_run(deck: Deck, snippet_id: str, tag: str, variant: str = "beta") -> None:
    run = logged(deck, tag)
    assert run["status"] == "success", run
    assert run["dialect"] == DIALECTS[snippet_id]
    assert run["deployment"] == "fast" and run["variant"] == variant
    assert run["inputs"] == {"text": "<text>", "audience": "<audience>"}
    assert run["metadata"] == {"environment": "test", "snippet": tag}
    assert run["end_user"] == (None if snippet_id == "python-vellum" else "user-123")
    assert run["output"] == "".join(ANSWER)


def run_python(deck: Deck, code: str, directory: Path) -> str:
    """Run a snippet as a user would (a file, the key in the environment); its printed output."""
    path = directory / "snippet.py"
    path.write_text(code)
    done = subprocess.run(
        [sys.executable, str(path)],
        env={**os.environ, "PROMPTDECK_API_KEY": deck.admin_key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ── what the snippets say ────────────────────────────────────────────────────


def test_example_inputs_come_from_the_declared_inputs() -> None:
    declared = {
        "text": InputSpec(),
        "tone": InputSpec(required=False, default="friendly"),
        "limit": InputSpec(type="integer"),
        "order": InputSpec(type="json", schema={"type": "object", "examples": [{"id": 7}]}),
        "history": InputSpec(type="chat_history"),
    }
    assert example_inputs(declared) == {
        "text": "<text>",
        "tone": "friendly",
        "limit": 1,
        "order": {"id": 7},
        "history": [{"role": "user", "content": "<history>"}],
    }


def test_the_default_variant_is_named_only_where_the_dialect_needs_it() -> None:
    made = {
        s.id: s.code
        for s in snippets("http://deck.example:8400/", "fast", None, {"text": "it's"}, default_variant="main")
    }
    assert set(made) == {"curl", "python-fetch-hive", "python-vellum", "python-openai", "js-fetch"}
    assert all(
        "http://deck.example:8400/v1" in code for name, code in made.items() if name != "python-vellum"
    )
    assert '"variant"' not in made["curl"] and "variant=" not in made["python-fetch-hive"]
    assert 'model="fast",' in made["python-openai"] and '"variant"' not in made["js-fetch"]
    assert 'release_tag="main"' in made["python-vellum"]  # the code says which variant it calls
    assert "'\\''" in made["curl"]  # the quote inside the shell's single-quoted body
    assert 'os.environ["PROMPTDECK_API_KEY"]' in made["python-openai"]
    with pytest.raises(ValueError, match=r"\$NAME"):
        snippets("http://deck.example", "fast", None, {}, api_key_placeholder="pd_secret")


# ── running them ─────────────────────────────────────────────────────────────


@pytest.mark.parametrize("snippet_id", PYTHON_SNIPPETS)
def test_each_python_snippet_runs_and_is_logged(served: Deck, snippet_id: str, tmp_path: Path) -> None:
    snippet = generate(served, snippet_id)[snippet_id]
    assert snippet.language == "python"
    printed = run_python(served, snippet.code, tmp_path)
    assert printed.strip() == "".join(ANSWER)
    check_run(served, snippet_id, snippet_id)


def test_the_vellum_snippet_names_the_default_variant(served: Deck, tmp_path: Path) -> None:
    snippet = generate(served, "vellum-default", variant=None)["python-vellum"]
    assert 'release_tag="default"' in snippet.code
    assert run_python(served, snippet.code, tmp_path).strip() == "".join(ANSWER)
    check_run(served, "python-vellum", "vellum-default", variant="default")


def test_the_curl_snippet_runs_and_is_logged(served: Deck) -> None:
    if shutil.which("curl") is None:
        unavailable("curl is not installed")
    snippet = generate(served, "curl")["curl"]
    done = subprocess.run(
        ["bash", "-c", snippet.code],
        env={**os.environ, "PROMPTDECK_API_KEY": served.admin_key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["response"] == "".join(ANSWER)
    check_run(served, "curl", "curl")


async def test_the_javascript_snippet_streams_in_a_browser(served: Deck) -> None:
    """In Chromium, on a page of the server's own origin: the answer arrives piece by piece."""
    snippet = generate(served, "js-fetch")["js-fetch"]
    filled = snippet.code.replace(f'"{KEY_TO_FILL_IN}"', json.dumps(served.admin_key), 1)
    assert filled != snippet.code
    # The snippet runs inside a function whose own `console` records what it prints, and when.
    wrapped = (
        "async () => {\n"
        "  const printed = [];\n"
        "  const console = { log: (text) => printed.push([performance.now(), String(text)]) };\n"
        f"{filled}\n"
        "  return printed;\n"
        "}"
    )
    started = await launch_chromium()
    if isinstance(started, str):
        unavailable(started)
    playwright, chromium = started
    try:
        page = await chromium.new_page()
        await page.goto(served.url + "/api/health")
        printed: list[tuple[float, str]] = await page.evaluate(wrapped)
    finally:
        await chromium.close()
        await playwright.stop()

    *pieces, usage = printed
    assert "".join(text for _, text in pieces) == "".join(ANSWER)
    assert len(pieces) > 1 and pieces[-1][0] - pieces[0][0] > 100  # ms: streamed, not all at once
    assert usage[1].startswith("\n[") and "tokens]" in usage[1]
    check_run(served, "js-fetch", "js-fetch")
