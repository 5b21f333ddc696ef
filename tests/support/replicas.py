"""Two `promptdeck serve` processes sharing one PostgreSQL and one Redis, all on loopback: the
production topology of docs/deploy.md in miniature, for the tests that hold limits, budgets and
key revocations across replicas.

    with two_replicas(tmp_path, postgres.new_database(), redis.url, upstream.url) as pair:
        pair.a.url, pair.b.url           # the replicas
        pair.admin_key                   # from `promptdeck init`, valid on both
        await pair.invoke_many(100, "fast")   # spread over both, all at once

Each replica is a real child process, so nothing is shared but the database, Redis and the
secret key's file in the common data directory (as `PROMPTDECK_SECRET_KEY` would be).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.invoking import INPUTS
from tests.support.postgres import free_port

PROMPTDECK = Path(sys.executable).parent / "promptdeck"
STARTUP_SECONDS = 60


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert self.process.poll() is None, f"replica {self.name} exited:\n{self.log.read_text()}"
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (
                f"replica {self.name} did not come up:\n{self.log.read_text()}"
            )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # graceful: the run writer drains
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Replicas:
    a: Replica
    b: Replica
    admin_key: str

    @property
    def both(self) -> tuple[Replica, Replica]:
        return self.a, self.b

    async def invoke_many(
        self, count: int, deployment: str, key: str | None = None, **fields: Any
    ) -> list[httpx.Response]:
        """`count` Fetch Hive invokes of `deployment` at once, alternating between the replicas."""
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        body = {"deployment": deployment, "inputs": INPUTS} | fields
        async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
            urls = [self.both[i % 2].url + "/v1/prompt/invoke" for i in range(count)]
            return list(await asyncio.gather(*(client.post(url, json=body) for url in urls)))


def replica_env(
    data_dir: Path, database_url: str, redis_url: str, upstream_url: str, **extra: str
) -> dict[str, str]:
    """The settings every replica must share (docs/deploy.md), and the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTDECK_")}
    return env | {
        "PROMPTDECK_DATA_DIR": str(data_dir),  # holds the secret key's file: one key for both
        "PROMPTDECK_DATABASE_URL": database_url,
        "PROMPTDECK_REDIS_URL": redis_url,
        "PROMPTDECK_OPENAI_BASE_URL": upstream_url,
        "PROMPTDECK_WRITER_FLUSH_SECONDS": "0.05",
        "PROMPTDECK_LOG_LEVEL": "warning",
        **extra,
    }


@contextmanager
def two_replicas(
    data_dir: Path, database_url: str, redis_url: str, upstream_url: str, **settings: str
) -> Iterator[Replicas]:
    """`promptdeck init` once, then two `promptdeck serve` on their own ports; `settings` are
    further PROMPTDECK_* variables for both. Stopped (gracefully) on leaving."""
    env = replica_env(data_dir, database_url, redis_url, upstream_url, **settings)
    init = subprocess.run([str(PROMPTDECK), "init", "--json"], env=env, capture_output=True, timeout=120)
    assert init.returncode == 0, init.stderr.decode()
    admin_key = json.loads(init.stdout)["api_key"]
    with ExitStack() as stack:
        replicas = []
        for name in ("a", "b"):
            port = free_port()
            log = data_dir / f"replica-{name}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [str(PROMPTDECK), "serve"],
                    env=env | {"PROMPTDECK_PORT": str(port)},
                    stdout=output,
                    stderr=output,
                )
            replica = Replica(name, f"http://127.0.0.1:{port}", process, log)
            stack.callback(replica.stop)
            replicas.append(replica)
        for replica in replicas:
            replica.wait_until_up()
        yield Replicas(replicas[0], replicas[1], admin_key)
