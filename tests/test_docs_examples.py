"""Every block of README.md and docs/ marked runnable (`<!-- runnable -->`), run as written.

As a newcomer would: in a copy of the repository's examples beside this virtualenv, after
`promptdeck quickstart` (what `make run` runs) has set it up and is serving on the embedded
model, with no provider key. Blocks run in document order, README first, each in a fresh
shell (`bash -euo pipefail`) or Python, with the environment the README's first block sets:
the virtualenv activated, `PROMPTDECK_URL` and `PROMPTDECK_API_KEY`. The one change made to a
block is the server's port (8400 in the text, a free one here); `curl` fails on an HTTP
error, so an example answering 404 fails its test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.doc_examples import ROOT, RUNNABLE_LANGUAGES, Block, blocks, documents, runnable_blocks
from tests.support.postgres import free_port

VENV = Path(sys.prefix)
RUNNABLE = runnable_blocks()
DIALECT_PATHS = ("/v1/prompt/invoke", "/v1/chat/completions", "/prompt/summarize/run", "/v1/execute-prompt")


@dataclass(frozen=True)
class Checkout:
    folder: Path
    url: str
    port: int
    env: dict[str, str]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checkout]:
    folder = tmp_path_factory.mktemp("clone")
    shutil.copytree(ROOT / "examples", folder / "examples")
    (folder / ".venv").symlink_to(VENV)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROMPTDECK_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_"))
    }
    env["PROMPTDECK_PORT"] = str(port)
    server = subprocess.Popen(
        [str(VENV / "bin" / "promptdeck"), "quickstart"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/api/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert server.poll() is None, "promptdeck quickstart exited"
        assert time.monotonic() < deadline, "promptdeck quickstart did not start serving"
        time.sleep(0.1)
    key = (folder / ".promptdeck" / "dev-admin-key").read_text().strip()
    shell_env = env | {
        "PROMPTDECK_URL": url,
        "PROMPTDECK_API_KEY": key,
        "VIRTUAL_ENV": str(folder / ".venv"),
        "PATH": f"{folder / '.venv' / 'bin'}:{env['PATH']}",
    }
    try:
        yield Checkout(folder, url, port, shell_env)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.where for block in RUNNABLE])
def test_runnable_block_runs_as_written(block: Block, checkout: Checkout) -> None:
    """A shell block sees the variables the document's earlier shell blocks exported, as in a
    reader's one terminal; a block that only sets variables may print nothing."""
    code = block.code.replace("127.0.0.1:8400", f"127.0.0.1:{checkout.port}")
    state = checkout.folder / f".exports-{block.path.stem}"
    if block.language == "sh":
        prelude = f'[ -f {state} ] && source {state}\ncurl() {{ command curl --fail-with-body "$@"; }}\n'
        epilogue = f"\nexport -p > {state}\n"
        command = ["bash", "-euo", "pipefail", "-c", prelude + code + epilogue]
    else:
        command = [str(checkout.folder / ".venv" / "bin" / "python"), "-c", code]
    done = subprocess.run(
        command, cwd=checkout.folder, env=checkout.env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip() or only_sets_variables(block.code), f"{block.where} printed nothing"


def only_sets_variables(code: str) -> bool:
    lines = [line.strip() for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
    return all(line.startswith("export ") or line.split("=", 1)[0].isidentifier() for line in lines)


def test_the_readme_shows_every_dialect_runnable() -> None:
    """Each dialect's first call is among the README's runnable blocks, and so is every shell
    or Python block but `make run` itself (which this test's set-up stands for)."""
    readme = blocks(ROOT / "README.md")
    runnable = "".join(block.code for block in readme if block.runnable)
    assert all(path in runnable for path in DIALECT_PATHS)
    assert [
        block.where for block in readme if block.language in RUNNABLE_LANGUAGES and not block.runnable
    ] == [block.where for block in readme if block.code.startswith("make run")]


def test_only_shell_and_python_blocks_are_marked() -> None:
    marked = [block for path in documents() for block in blocks(path) if block.runnable]
    assert {block.language for block in marked} <= set(RUNNABLE_LANGUAGES), [
        block.where for block in marked if block.language not in RUNNABLE_LANGUAGES
    ]
