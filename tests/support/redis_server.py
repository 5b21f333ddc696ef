"""A throw-away redis-server on loopback (Debian's `redis-server`), without persistence.

Under CI=true a missing redis-server is a failure, never a skip (the `redis` fixture says so).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.postgres import free_port

REDIS_SERVER = "/usr/bin/redis-server"


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis() -> RedisServer | str:
    """Start a server, or return why it cannot be started."""
    binary = REDIS_SERVER if Path(REDIS_SERVER).exists() else shutil.which("redis-server")
    if binary is None:
        return "redis-server is not installed (apt-get install -y redis-server; `make services` does it)"
    directory = Path(tempfile.mkdtemp(prefix="promptdeck-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, directory, process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.ping():
            return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    return "redis-server started but does not answer PING"


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A running server for the block, stopped after it; a test that needs one fails under CI
    when it cannot start (a missing Redis must not pass as a skip there) and is skipped elsewhere."""
    server = start_redis()
    if isinstance(server, str):
        if IN_CI:
            pytest.fail(f"CI must run the Redis tests: {server}")
        pytest.skip(server)
    try:
        yield server
    finally:
        server.stop()
