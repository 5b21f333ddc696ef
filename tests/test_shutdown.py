"""A graceful shutdown loses no run: `promptdeck serve` as a real process, runs waiting in the
writer's queue, then SIGTERM. Every invoke that was answered must be a row afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, push_prompt
from tests.support.postgres import free_port

upstream = fake_openai.upstream

PROMPTDECK = Path(sys.executable).parent / "promptdeck"
# Long enough that every run is still queued at SIGTERM, even on a busy 2-core machine where 200
# invokes take 2-3 s; the drain itself does not wait for it (stop() wakes the writer at once).
FLUSH_SECONDS = 30.0
INVOKES = 200


@dataclass
class Served:
    url: str
    admin_key: str
    process: subprocess.Popen[bytes]
    database: Path
    log: Path

    def health(self) -> dict[str, object]:
        return dict(httpx.get(self.url + "/api/health", timeout=5).json())

    def send(self, number: int = signal.SIGTERM) -> None:
        self.process.send_signal(number)

    def wait_for_exit(self, number: int = signal.SIGTERM) -> None:
        """The process exits cleanly. After its graceful shutdown uvicorn re-raises the signal
        it caught, so "killed by that signal" is a clean exit too; a traceback is not."""
        code = self.process.wait(timeout=60)
        log = self.log.read_text()
        assert code in (0, -number), log
        assert "Traceback" not in log and "ERROR" not in log, log

    def stored_runs(self) -> list[tuple[str, str, int]]:
        with sqlite3.connect(self.database) as db:
            return db.execute("SELECT request_id, status, streamed FROM runs").fetchall()


@contextmanager
def serve(tmp_path: Path, upstream_url: str) -> Iterator[Served]:
    """`promptdeck init` then `promptdeck serve` in a child process, with a slow run writer."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTDECK_")}
    env |= {
        "PROMPTDECK_DATA_DIR": str(tmp_path),
        "PROMPTDECK_PORT": str(port),
        "PROMPTDECK_WRITER_FLUSH_SECONDS": str(FLUSH_SECONDS),
        "PROMPTDECK_WRITER_BATCH_SIZE": "1000",  # more than the test sends: all stay queued
        "PROMPTDECK_OPENAI_BASE_URL": upstream_url,
        "PROMPTDECK_LOG_LEVEL": "warning",
    }
    init = subprocess.run(
        [str(PROMPTDECK), "init", "--json"], env=env, capture_output=True, check=True, timeout=60
    )
    key = json.loads(init.stdout)["api_key"]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(PROMPTDECK), "serve"], env=env, stdout=output, stderr=output)
    served = Served(f"http://127.0.0.1:{port}", key, process, tmp_path / "promptdeck.db", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                served.health()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "promptdeck serve did not come up"
                time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def invoke_all(served: Served, count: int, deployment: str) -> list[str]:
    """`count` concurrent invokes, alternating endpoints and streaming; their request ids."""
    headers = {"Authorization": f"Bearer {served.admin_key}"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=60, limits=limits) as client:

        async def one(n: int) -> str:
            path = ("/v1/prompt/invoke", "/v1/invoke")[n % 2]
            streaming = n % 4 >= 2
            body = {"deployment": deployment, "inputs": INPUTS, "streaming": streaming}
            response = await client.post(path, json=body)
            assert response.status_code == 200, response.text
            if streaming:
                assert response.text.endswith("data: [DONE]\n\n")
                first = response.text.split("\n\n", 1)[0]
                return str(json.loads(first.removeprefix("data: "))["request_id"])
            return str(response.json()["request_id"])

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def test_sigterm_drains_every_queued_run(upstream: FakeOpenAI, tmp_path: Path) -> None:
    with serve(tmp_path, upstream.url) as served:
        push_prompt(served.url, served.admin_key, "fast", "openai/fast")
        request_ids = await invoke_all(served, INVOKES, "fast")
        writer = served.health()["writer"]
        assert isinstance(writer, dict) and writer["written"] == 0, "the runs must still be queued"
        served.send()
        served.wait_for_exit()

        stored = served.stored_runs()
    assert len(stored) == INVOKES
    assert {row[0] for row in stored} == set(request_ids)
    assert {row[1] for row in stored} == {"success"}
    assert sum(row[2] for row in stored) == INVOKES // 2


async def test_sigterm_lets_open_streams_finish_and_logs_them(upstream: FakeOpenAI, tmp_path: Path) -> None:
    upstream.scripts["slow"] = Script(chunks=("one", " two", " three"), delay=0.4)
    with serve(tmp_path, upstream.url) as served:
        push_prompt(served.url, served.admin_key, "slow", "openai/slow")
        headers = {"Authorization": f"Bearer {served.admin_key}"}
        body = {"deployment": "slow", "inputs": INPUTS, "streaming": True}
        async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=60) as client:

            async def stream(midway: asyncio.Event) -> str:
                async with client.stream("POST", "/v1/prompt/invoke", json=body) as response:
                    assert response.status_code == 200
                    parts = []
                    async for part in response.aiter_text():
                        parts.append(part)
                        midway.set()
                    return "".join(parts)

            midway = [asyncio.Event() for _ in range(10)]
            streams = [asyncio.create_task(stream(event)) for event in midway]
            async with asyncio.timeout(30):  # every stream has its first event, and more to come
                for event in midway:
                    await event.wait()
            served.send()
            bodies = await asyncio.gather(*streams)
        await asyncio.to_thread(served.wait_for_exit)

        stored = served.stored_runs()
    assert all(b.endswith("data: [DONE]\n\n") and '"type":"usage"' in b for b in bodies)
    assert len(stored) == 10 and {row[1] for row in stored} == {"success"}


async def test_ctrl_c_drains_too(upstream: FakeOpenAI, tmp_path: Path) -> None:
    with serve(tmp_path, upstream.url) as served:
        push_prompt(served.url, served.admin_key, "fast", "openai/fast")
        request_ids = await invoke_all(served, 20, "fast")
        served.send(signal.SIGINT)
        served.wait_for_exit(signal.SIGINT)
        assert {row[0] for row in served.stored_runs()} == set(request_ids)
