"""The access log of a real `promptdeck serve`: one line per request on its standard output
(PROMPTDECK_LOG_FORMAT text or json), none at PROMPTDECK_LOG_LEVEL=warning, and no second
line from uvicorn."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, push_prompt
from tests.support.invoking import INPUTS
from tests.support.postgres import free_port
from tests.test_cli import PROMPTDECK, cli_env, init_key

upstream = fake_openai.upstream
TEXT_LINE = re.compile(
    r"INFO:     127\.0\.0\.1:\d+ (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+\.\d)ms"
    r"(?: deployment=(?P<deployment>\S+))?(?: run=(?P<run>\S+))?"
)


@dataclass
class Served:
    """What a stopped `promptdeck serve` printed."""

    stdout: str
    stderr: str


@dataclass
class Server:
    url: str
    key: str
    process: subprocess.Popen[str]

    def stop(self) -> Served:
        self.process.terminate()
        stdout, stderr = self.process.communicate(timeout=30)
        return Served(stdout, stderr)


StartServer = Callable[..., Server]


@pytest.fixture
def serve(upstream: FakeOpenAI, tmp_path: Path) -> Iterator[StartServer]:
    """`serve(**env)`: `promptdeck init`, then `promptdeck serve` with its output captured, and
    the `fast` deployment (model `openai/fast`, answered by the fake upstream) pushed."""
    started: list[Server] = []

    def start(**extra: str) -> Server:
        data_dir = tmp_path / f"data-{len(started)}"
        port = free_port()
        env = cli_env(data_dir, PROMPTDECK_OPENAI_BASE_URL=upstream.url, PROMPTDECK_PORT=str(port))
        key = init_key(env)
        process = subprocess.Popen(
            [str(PROMPTDECK), "serve"],
            env=env | extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = Server(f"http://127.0.0.1:{port}", key, process)
        started.append(server)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(server.url + "/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "promptdeck serve did not start"
            time.sleep(0.05)
        push_prompt(server.url, key, "fast", "openai/fast")
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def some_requests(server: Server) -> str:
    """A health check, a streamed Fetch Hive invoke, an OpenAI chat call and a 404 (the push
    before them is logged too); returns the chat call's run id."""
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
        assert client.get("/api/health").status_code == 200
        body = {"deployment": "fast", "inputs": INPUTS, "streaming": True}
        with client.stream("POST", "/v1/prompt/invoke", json=body) as response:
            assert response.status_code == 200 and "[DONE]" in response.read().decode()
        chat = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "variables": INPUTS}
        response = client.post("/v1/chat/completions", json=chat)
        assert response.status_code == 200, response.text
        assert client.get("/v1/no-such-path").status_code == 404
    return response.headers["x-request-id"]


EXPECTED = [
    ("GET", "/api/health", 200),
    ("POST", "/api/push", 200),
    ("GET", "/api/health", 200),
    ("POST", "/v1/prompt/invoke", 200),
    ("POST", "/v1/chat/completions", 200),
    ("GET", "/v1/no-such-path", 404),
]


def test_text_lines_one_per_request(serve: StartServer) -> None:
    server = serve()
    run_id = some_requests(server)
    served = server.stop()
    lines = served.stdout.splitlines()
    matches = [TEXT_LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    seen = [(m["method"], m["path"], int(m["status"])) for m in matches if m]
    assert seen[-len(EXPECTED) :] == EXPECTED, lines  # the first health checks may have been refused
    chat, streamed = matches[-2], matches[-3]
    assert chat is not None and chat["run"] == run_id and chat["deployment"] == "fast"
    assert streamed is not None and streamed["deployment"] == "fast" and streamed["run"].startswith("req_")
    assert all(m is not None and float(m["ms"]) > 0 for m in matches)
    assert "/v1/chat/completions" not in served.stderr  # uvicorn's access log is off
    assert "Uvicorn running on" in served.stderr or "Application startup complete" in served.stderr


def test_json_lines_and_json_server_logs(serve: StartServer) -> None:
    server = serve(PROMPTDECK_LOG_FORMAT="json")
    run_id = some_requests(server)
    served = server.stop()
    entries = [orjson.loads(line) for line in served.stdout.splitlines()]
    assert [(e["method"], e["path"], e["status"]) for e in entries][-len(EXPECTED) :] == EXPECTED
    chat = entries[-2]
    assert chat["deployment"] == entries[-3]["deployment"] == "fast"
    assert chat["run_id"] == run_id and chat["logger"] == "promptdeck.access" and chat["level"] == "info"
    assert chat["duration_ms"] > 0 and chat["client"].startswith("127.0.0.1:")
    assert entries[-1]["deployment"] is None and entries[-1]["run_id"] is None
    assert set(chat) == {
        "time", "level", "logger", "client", "method", "path", "status", "duration_ms", "deployment", "run_id"
    }  # fmt: skip
    server_logs = [orjson.loads(line) for line in served.stderr.splitlines()]  # uvicorn's, as JSON too
    assert any(e["logger"].startswith("uvicorn") and "startup complete" in e["message"] for e in server_logs)


def test_no_access_lines_above_info(serve: StartServer) -> None:
    server = serve(PROMPTDECK_LOG_LEVEL="WARNING")
    some_requests(server)
    served = server.stop()
    assert served.stdout == ""
    assert "/v1/chat/completions" not in served.stderr


def test_a_hostile_path_cannot_forge_a_line(serve: StartServer) -> None:
    """A newline or a carriage return in the path, percent-encoded (the only way it can be sent),
    stays encoded in the text line: one request, one line, whatever its path says."""
    server = serve()
    forged = "/v1/x%0AINFO:%20%20%20%20%20127.0.0.1:1%20POST%20/api/keys%20200%201.0ms%0D"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get(forged).status_code == 404
    lines = server.stop().stdout.splitlines()
    assert all(TEXT_LINE.fullmatch(line) for line in lines), lines
    (hostile,) = [line for line in lines if "/v1/x" in line]
    assert "/v1/x%0AINFO:" in hostile and "POST /api/keys" not in "".join(lines)
