"""`promptdeck serve --workers 2` on SQLite, without Redis (issue 20, "Several workers"): a real
supervisor and two real workers on one loopback port, a fake upstream, and calls each on its own
connection. Which worker answered a call is read from /proc: the worker holding the server end
of the call's connection.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from promptdeck.domain.change_events import AccessChanged, ChangeEvent, ChangeFeed
from promptdeck.engine.local_change_bus import LocalChangeBus
from tests.support.fake_openai import FakeOpenAI, Script, push_prompt
from tests.support.invoking import INPUTS
from tests.support.postgres import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")

PROMPTDECK = Path(sys.executable).parent / "promptdeck"
STARTUP_SECONDS = 60
LISTEN = "0A"  # a socket's state in /proc/net/tcp


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    admin_key: str
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> set[int]:
        """The supervisor's children."""
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found.add(int(entry))
        return found

    def call(
        self, key: str, deployment: str = "fast", method: str = "POST", path: str = "/v1/prompt/invoke"
    ) -> tuple[int, int]:
        """One call on a new connection: (status, the pid of the worker that answered)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.connect()
            assert conn.sock is not None
            body = orjson.dumps({"deployment": deployment, "inputs": INPUTS})
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, self.answering(conn.sock)
        finally:
            conn.close()

    def answering(self, client: socket.socket) -> int:
        """The worker holding the server end of `client`'s connection."""
        inode = server_end(self.port, client.getsockname()[1])
        for pid in self.workers():
            fds = Path(f"/proc/{pid}/fd")
            for fd in os.listdir(fds):
                try:
                    if os.readlink(fds / fd) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        raise AssertionError(f"no worker holds the connection from port {client.getsockname()[1]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def tcp_sockets() -> list[list[str]]:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return [row.split() for row in rows]


def port_of(address: str) -> int:
    return int(address.split(":")[1], 16)


def server_end(server_port: int, client_port: int) -> str:
    for row in tcp_sockets():
        if port_of(row[1]) == server_port and port_of(row[2]) == client_port:
            return row[9]
    raise AssertionError(f"no connection from port {client_port} to {server_port}")


def listeners(port: int) -> int:
    return sum(1 for row in tcp_sockets() if port_of(row[1]) == port and row[3] == LISTEN)


@contextmanager
def serve_workers(data_dir: Path, upstream_url: str, **settings: str) -> Iterator[Served]:
    """`promptdeck init`, then `promptdeck serve --workers 2` until both workers listen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTDECK_")} | {
        "PROMPTDECK_DATA_DIR": str(data_dir),
        "PROMPTDECK_OPENAI_BASE_URL": upstream_url,
        "PROMPTDECK_LOG_LEVEL": "warning",
        **settings,
    }
    init = subprocess.run([str(PROMPTDECK), "init", "--json"], env=env, capture_output=True, timeout=120)
    assert init.returncode == 0, init.stderr.decode()
    port = free_port()
    log = data_dir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(PROMPTDECK), "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=output,
        )
    served = Served(process, port, json.loads(init.stdout)["api_key"], data_dir, log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while listeners(port) < 2:
            assert process.poll() is None, f"serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the workers did not come up:\n{log.read_text()}"
            time.sleep(0.1)
        push_prompt(served.url, served.admin_key, "fast", "openai/fast")
        push_prompt(served.url, served.admin_key, "slow", "openai/slow")
        yield served
    finally:
        if process.poll() is None:
            process.terminate()  # graceful: every worker drains and exits with the supervisor
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def both_answer(served: Served, key: str, status: int, tries: int = 200) -> set[int]:
    """Call on new connections until each worker has answered with `status`; the pids."""
    pids: set[int] = set()
    for _ in range(tries):
        got, pid = served.call(key)
        assert got == status, (got, pid)
        pids.add(pid)
        if len(pids) == 2:
            return pids
    raise AssertionError(f"only worker(s) {pids} answered in {tries} calls")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        server.scripts["slow"] = Script(delay=1.0)
        yield server


@pytest.fixture(scope="module")
def served(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two workers whose key cache lives 300 s: only a change event makes one drop a key in time."""
    with serve_workers(tmp_path_factory.mktemp("workers"), upstream.url, PROMPTDECK_CACHE_TTL="300") as s:
        yield s


def test_calls_spread_over_both_workers(served: Served) -> None:
    pids = both_answer(served, served.admin_key, 200)
    assert pids == served.workers()
    assert served.process.pid not in pids  # the supervisor serves nothing itself


def test_a_key_revoked_through_one_worker_is_refused_by_every_worker_within_a_second(served: Served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    headers = {"Authorization": f"Bearer {served.admin_key}", "Content-Type": "application/json"}
    conn.request("POST", "/api/keys", body=b'{"name": "short-lived"}', headers=headers)
    made = json.loads(conn.getresponse().read())
    both_answer(served, made["api_key"], 200)  # cached by both workers, for 300 s
    # A worker without a socket (gone, or never bound): the others' messages to it are refused.
    bus = next(Path(tempfile.gettempdir()).glob(f"promptdeck-workers-*/{min(served.workers())}.sock")).parent
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(bus / "999999999.sock"))
    stale.close()
    (bus / "not-a-socket.sock").write_text("")

    conn.request("POST", f"/api/keys/{made['id']}/revoke", headers=headers)
    revoked = conn.getresponse()
    assert revoked.status == 200, revoked.read()
    revoked.read()
    assert conn.sock is not None
    through = served.answering(conn.sock)
    conn.close()
    started = time.monotonic()
    seen: dict[int, int] = {}
    while len(seen) < 2 or min(seen.values()) < 5:  # five refusals from each worker
        status, pid = served.call(made["api_key"])
        if status == 200:
            assert pid != through, "the worker that revoked the key still serves it"
            assert time.monotonic() - started < 1.0, (
                f"worker {pid} still serves a key revoked through {through}"
            )
            continue
        assert status == 401, status
        seen[pid] = seen.get(pid, 0) + 1
    assert set(seen) == served.workers()
    both_answer(served, served.admin_key, 200)  # and the workers still serve


def test_a_worker_that_dies_is_replaced(served: Served) -> None:
    before = served.workers()
    killed = min(before)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + STARTUP_SECONDS
    while len(now := served.workers()) < 2 or killed in now or listeners(served.port) < 2:
        assert served.process.poll() is None, served.log.read_text()
        assert time.monotonic() < deadline, f"no worker replaced {killed}:\n{served.log.read_text()}"
        time.sleep(0.1)
    assert both_answer(served, served.admin_key, 200) == now
    assert not list(Path(tempfile.gettempdir()).glob(f"promptdeck-workers-*/{killed}.sock"))


def test_workers_stop_when_their_supervisor_is_killed(upstream: FakeOpenAI, tmp_path: Path) -> None:
    """SIGKILL to the supervisor leaves no worker serving on unsupervised: each gets SIGTERM from
    the kernel (PR_SET_PDEATHSIG) and exits."""
    with serve_workers(tmp_path, upstream.url) as served:
        workers = served.workers()
        assert len(workers) == 2, workers
        served.process.kill()
        served.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while alive := {pid for pid in workers if Path(f"/proc/{pid}").exists() and not _zombie(pid)}:
            assert time.monotonic() < deadline, f"workers {alive} outlived their supervisor"
            time.sleep(0.1)
        assert listeners(served.port) == 0


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_no_run_is_lost_when_the_workers_stop(upstream: FakeOpenAI, tmp_path: Path) -> None:
    """Runs wait in each worker's writer (it flushes every 60 s); SIGTERM to the supervisor
    drains both, calls still in flight included."""
    with serve_workers(tmp_path, upstream.url, PROMPTDECK_WRITER_FLUSH_SECONDS="60") as served:
        answered = [served.call(served.admin_key) for _ in range(30)]
        assert {status for status, _ in answered} == {200}
        assert {pid for _, pid in answered} == served.workers(), "the calls did not reach both workers"
        in_flight = []
        for _ in range(6):
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
            body = orjson.dumps({"deployment": "slow", "inputs": INPUTS})
            headers = {"Authorization": f"Bearer {served.admin_key}", "Content-Type": "application/json"}
            conn.request("POST", "/v1/prompt/invoke", body=body, headers=headers)
            in_flight.append(conn)
        time.sleep(0.3)  # the slow upstream answers after 1 s
        served.process.send_signal(signal.SIGTERM)
        finished = [conn.getresponse().status for conn in in_flight]
        assert served.stop() == 0, served.log.read_text()
    assert finished == [200] * len(in_flight)
    with sqlite3.connect(tmp_path / "promptdeck.db") as db:
        (written,) = db.execute("SELECT count(*) FROM runs").fetchone()
    assert written == len(answered) + len(in_flight)
    assert not list(Path(tempfile.gettempdir()).glob(f"promptdeck-workers-*/{served.process.pid}*"))


def test_the_local_bus_reaches_every_live_worker_and_skips_the_gone(tmp_path: Path) -> None:
    """Three buses in one directory (as three workers would be); one never started (no socket)
    and a stale socket file of a worker that has gone: the live one still hears each change."""

    async def scenario() -> list[ChangeEvent]:
        heard: list[ChangeEvent] = []
        sender_feed, listener_feed, silent_feed = ChangeFeed(), ChangeFeed(), ChangeFeed()
        listener_feed.subscribe(heard.append)
        sender = LocalChangeBus(sender_feed, tmp_path)
        listener = LocalChangeBus(listener_feed, tmp_path)
        listener.path = tmp_path / "2.sock"  # one process here: each bus its own name
        LocalChangeBus(silent_feed, tmp_path).path = tmp_path / "3.sock"  # never started: no socket
        gone = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        gone.bind(str(tmp_path / "4.sock"))
        gone.close()
        await sender.start()
        await listener.start()
        for workspace in ("w1", "w2"):
            sender_feed.publish(AccessChanged(workspace))
        for _ in range(100):
            if len(heard) == 2:
                break
            await asyncio.sleep(0.01)
        await sender.stop()
        await listener.stop()
        return heard

    assert asyncio.run(scenario()) == [AccessChanged("w1"), AccessChanged("w2")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4.sock"]  # each bus removed its own
