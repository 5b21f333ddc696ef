"""The server's hot path does not import what only other paths need (bench/README.md "Memory"):
each module below costs the server's memory for nothing until its own path is taken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_settings, seed
from tests.support.postgres import free_port

ROOT = Path(__file__).resolve().parents[1]
# Package -> the only path that needs it.
LAZY = {
    "alembic": "migrating (serve migrates in a child process)",
    "cryptography": "a stored provider credential or webhook secret",
    "rapidfuzz": "an evaluation's similarity evaluator",
    "jsonpath_ng": "an evaluation's JSON path evaluator",
    "llama_cpp": "the local model",
    "redis": "PROMPTDECK_REDIS_URL",
    "aiohttp": "a webhook, a media fetch or a trace export (upstream calls have their own client)",
    "typer": "the command line, not the app",
    "rich": "the command line, not the app",
}
DOCUMENT = """
prompt: greet
model: openai/gpt-4o-mini
messages:
  - {role: user, content: "Say hello to {{name}}."}
inputs:
  name: {type: string, required: true}
deploy:
  greet: {default: latest}
"""
# Run in a fresh interpreter: a live server (uvicorn, as `serve` runs it) answers real HTTP
# calls on the invoke path (urllib: httpx would import rich), then the script prints which of
# LAZY were imported.
SCRIPT = """
import json, sys, urllib.error, urllib.request
from promptdeck.config import Settings
from tests.support.live_server import start_server

settings = Settings.model_validate_json(sys.argv[1])
key, lazy = sys.argv[2], json.loads(sys.argv[3])

def status(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(live.url + path, data, {"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code

live = start_server(settings)
try:
    statuses = [
        status("/api/health"),
        status("/v1/prompt/invoke", {"deployment": "greet", "inputs": {"name": "Ann"}}),
        status("/v1/chat/completions", {"model": "greet", "messages": []}),
        status("/v1/prompt/invoke", {"deployment": "nobody", "inputs": {}}),
    ]
finally:
    live.stop()
print(json.dumps({"statuses": statuses, "imported": [name for name in lazy if name in sys.modules]}))
"""


def test_serving_invokes_imports_none_of_the_lazy_modules(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens: the upstream call fails, after the whole hot path ran
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}",
        tmp_path,
        openai_base_url=f"http://127.0.0.1:{closed}/v1",
        openai_api_key="sk-test",
        writer_flush_seconds=0.05,
    )
    _, key = seed(settings, DOCUMENT)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, settings.model_dump_json(), key, json.dumps(sorted(LAZY))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    health, invoked, chat, unknown = found["statuses"]
    assert health == 200
    assert invoked >= 500 and chat >= 400 and unknown == 404, found  # each answered by the app
    assert found["imported"] == [], {name: LAZY[name] for name in found["imported"]}
