"""`GET /healthz` and `GET /readyz` of a live server: ready when everything answers, 503 naming
the failed check when the run writer is stopped, the schema is behind, the database is gone or
Redis does not answer; liveness stays 200 throughout."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptdeck.config import Settings
from tests.conftest import IN_CI, Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, deck_over
from tests.support.postgres import free_port, start_postgres

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck
StartDeck = fake_openai.StartDeck
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def readyz(deck: Deck) -> httpx.Response:
    return httpx.get(deck.url + "/readyz", timeout=30)


def checks(response: httpx.Response) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in response.json()["checks"]}


def until_status(deck: Deck, status: int, timeout: float = 10.0) -> httpx.Response:
    """Readiness results are shared for a second: wait for the one after the change."""
    deadline = time.monotonic() + timeout
    while (response := readyz(deck)).status_code != status:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)
    return response


def test_ready_and_alive_without_a_key(start_deck: StartDeck) -> None:
    deck = start_deck()
    alive = httpx.get(deck.url + "/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    assert alive.headers["cache-control"] == "no-store"
    ready = readyz(deck)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    found = checks(ready)
    assert set(found) == {"database", "migrations", "run_writer"}  # no Redis configured
    assert all(check["ok"] for check in found.values())


def test_not_ready_when_the_writer_is_stopped(start_deck: StartDeck) -> None:
    deck = start_deck()
    assert readyz(deck).status_code == 200
    deck.live.call(deck.services.writer.stop)
    found = checks(until_status(deck, 503))
    assert not found["run_writer"]["ok"]
    assert found["database"]["ok"] and found["migrations"]["ok"]
    assert httpx.get(deck.url + "/healthz").status_code == 200


def test_not_ready_when_migrations_are_behind(start_deck: StartDeck) -> None:
    """Behind this version's head: not ready. Past it (a newer version migrated during a
    rolling upgrade): still ready, so the older replicas serve until they are replaced."""
    deck = start_deck()
    ready = checks(readyz(deck))["migrations"]
    assert ready["ok"], ready
    database = deck.live.settings.database_url.split("///", 1)[1]
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    found = checks(until_status(deck, 503))
    assert not found["migrations"]["ok"]
    assert found["migrations"]["detail"].startswith("at 0001, expected ")
    assert found["database"]["ok"]
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    newer = checks(until_status(deck, 200))["migrations"]
    assert newer["ok"] and newer["detail"].startswith("at 9999, newer than this version's ")


def test_not_ready_when_the_database_is_gone(upstream: FakeOpenAI, tmp_path: Path) -> None:
    """A PostgreSQL server of its own, stopped under the running promptdeck."""
    server = start_postgres()
    if isinstance(server, str):
        if IN_CI:
            pytest.fail(f"CI must run the PostgreSQL tests: {server}")
        pytest.skip(server)
    try:
        with deck_over(upstream.url, server.new_database(), tmp_path) as deck:
            assert readyz(deck).status_code == 200
            server.stop()
            found = checks(until_status(deck, 503))
            assert not found["database"]["ok"] and not found["migrations"]["ok"]
            assert "postgres" not in readyz(deck).text  # no host, user or database name
            assert httpx.get(deck.url + "/healthz").status_code == 200
    finally:
        server.stop()


def answers_ping(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real redis-server on loopback, without persistence."""
    if "redis_url" not in Settings.model_fields:
        pytest.skip("PROMPTDECK_REDIS_URL is not a setting yet")
    port = free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not answers_ping(port):
            assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_checked_when_configured(start_deck: StartDeck, redis_url: str) -> None:
    deck = start_deck(redis_url=redis_url)
    ready = readyz(deck)
    assert ready.status_code == 200, ready.text
    assert checks(ready)["redis"]["ok"]
    gone = start_deck(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    found = checks(until_status(gone, 503))
    assert not found["redis"]["ok"]
    assert found["database"]["ok"] and found["run_writer"]["ok"]
