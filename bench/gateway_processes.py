"""The gateway benchmarks' processes: the fake upstream, the reference proxy and a seeded
`promptdeck serve`, each started on its core (`taskset`), reachable on 127.0.0.1 only; and
py-spy, to profile promptdeck while it is measured."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway_targets import PROMPT_DOCUMENT
from load_client import HOST, ConnectionClosed, connect
from run_meta import ROOT

HERE = Path(__file__).resolve().parent
GENERATOR_CORE = 0
PROMPTDECK_CORE = 1


def pinned(core: int | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if core is not None else command


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without proxies or stray PROMPTDECK_* or OTEL_* settings: loopback
    only, and no traces unless asked for."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROMPTDECK_", "OTEL_"))
        and not k.lower().endswith("_proxy")
        and k.lower() != "proxy"
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env | extra


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM (promptdeck drains its run writer), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start_listener(what: str, core: int | None, command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """A server that prints `listening on <port>` once ready: the process and its port."""
    process = subprocess.Popen(pinned(core, command), stdout=subprocess.PIPE, env=child_env({}))
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 15)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        stop_process(process)
        raise SystemExit(f"{what} did not start: {line!r}")
    return process, int(line.split()[-1])


def start_upstream(core: int | None, deltas: int, delay_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, str(HERE / "fake_upstream.py"), "--host", HOST, "--port", "0"]
    command += ["--deltas", str(deltas), "--delay-ms", str(delay_ms)]
    return start_listener("the fake upstream", core, command)


def start_proxy(core: int | None, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """The reference proxy (reference_proxy.py) in front of the upstream."""
    command = [sys.executable, str(HERE / "reference_proxy.py"), "--port", "0"]
    command += ["--upstream", f"http://{HOST}:{upstream_port}"]
    return start_listener("the reference proxy", core, command)


def start_redis(core: int | None, data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A throw-away Redis (Debian's `redis-server`) on loopback: nothing saved, nothing appended."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    command = [executable, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    command += ["--dir", str(data_dir), "--daemonize", "no"]
    with open(data_dir / "redis.log", "wb") as log_file:
        process = subprocess.Popen(pinned(core, command), stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return process, port
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise SystemExit(f"redis-server did not start:\n{(data_dir / 'redis.log').read_text()[-2000:]}")
        time.sleep(0.05)


def promptdeck_command() -> str:
    for candidate in (Path(sys.executable).parent / "promptdeck", ROOT / ".venv" / "bin" / "promptdeck"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("promptdeck")
    if found is None:
        raise SystemExit("promptdeck is not installed: run `make bench` or `pip install -e .`")
    return found


def api(port: int, method: str, path: str, key: str | None = None, body: Any = None) -> Any:
    """A JSON call to promptdeck's admin API, straight to 127.0.0.1 (no proxy look-up)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        raw = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path} answered HTTP {response.status}: {raw[:500]!r}")
        return json.loads(raw)
    finally:
        connection.close()


@contextlib.contextmanager
def promptdeck_server(
    core: int | None,
    upstream_port: int,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    setup: Callable[[int, str], None] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    """A migrated, seeded promptdeck on its own core: yields (process, port, invoke key).
    `extra_env`: more variables for it (e.g. OTEL_* ones: gateway_traces.py); `setup(port,
    admin key)`: more configuration once the prompt is pushed and the invoke key made (e.g.
    limits and budgets: gateway_quotas.py)."""
    executable = promptdeck_command()
    env = child_env(
        {
            "PROMPTDECK_DATA_DIR": str(data_dir),
            "PROMPTDECK_OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
            "PROMPTDECK_OPENAI_API_KEY": "x",
            "PROMPTDECK_LOG_LEVEL": "warning",
        }
        | (extra_env or {})
    )
    init = subprocess.run(
        [executable, "init", "--json"], env=env, capture_output=True, timeout=120, check=False
    )
    if init.returncode != 0:
        raise SystemExit(f"`promptdeck init` failed: {init.stderr.decode()[-2000:]}")
    admin_key = json.loads(init.stdout.decode().strip().splitlines()[-1])["api_key"]
    port = free_port()
    log_path = data_dir / "serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            pinned(core, [executable, "serve", "--host", HOST, "--port", str(port)]),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"promptdeck exited at start:\n{log_path.read_text()[-3000:]}")
            try:
                api(port, "GET", "/api/health")
                break
            except (OSError, RuntimeError) as exc:
                if time.monotonic() > deadline:
                    log = log_path.read_text()[-3000:]
                    raise SystemExit(f"promptdeck did not start in 60 s:\n{log}") from exc
                time.sleep(0.1)
        api(port, "POST", "/api/push", admin_key, PROMPT_DOCUMENT)
        invoke_key = api(port, "POST", "/api/keys", admin_key, {"name": "bench", "scopes": ["invoke"]})
        if setup is not None:
            setup(port, admin_key)
        yield process, port, invoke_key["api_key"]
    finally:
        stop_process(process)
        if process.returncode not in (0, -signal.SIGTERM):
            print(f"promptdeck exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")


class Profiler:
    """py-spy on promptdeck for each measured promptdeck phase, one output file per phase
    (`FILE` becomes `FILE-<phase>.<ext>`). It runs pinned beside the generator, so it takes
    nothing from promptdeck's core but its pauses for sampling."""

    def __init__(self, pid: int, output: Path, core: int | None) -> None:
        self.pid = pid
        self.output = output
        self.core = core
        self.process: subprocess.Popen[bytes] | None = None
        found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.py_spy = found if Path(found).exists() else None
        if self.py_spy is None:
            print("py-spy is not installed (pip install py-spy): no profile is taken")

    def start(self, phase: str) -> None:
        if self.py_spy is None:
            return
        suffix = self.output.suffix
        fmt = "speedscope" if suffix == ".json" else ("raw" if suffix == ".txt" else "flamegraph")
        output = self.output.with_name(f"{self.output.stem}-{phase}{suffix or '.svg'}")
        command = [self.py_spy, "record", "--pid", str(self.pid), "--output", str(output)]
        command += ["--format", fmt, "--rate", "250"]
        self.process = subprocess.Popen(
            pinned(self.core, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.3)  # attached before the measured requests start

    def stop(self) -> None:
        """SIGINT makes py-spy write what it sampled."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def writer_metrics(port: int) -> dict[str, Any]:
    """The run writer's counters from /api/health: the batches it wrote and how long the last one took."""
    connection = await connect(port, capture=True)
    request = f"GET /api/health HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    try:
        reply = await asyncio.wait_for(connection.send(request), 10)
        found = json.loads(reply.body).get("writer", {}) if reply.status == 200 else {}
    except (TimeoutError, ConnectionClosed, ValueError):
        found = {}
    finally:
        if connection.transport is not None:
            connection.transport.close()
    return {k: found[k] for k in ("written", "batches", "failed", "queued", "last_batch_ms") if k in found}


async def writer_drained(port: int, timeout_s: float = 30.0) -> dict[str, Any]:
    """The writer's counters once its queue is empty (or after `timeout_s`): what a phase
    queued is written before the next is measured, so that no phase pays for another's runs."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await writer_metrics(port)
        if found.get("queued", 0) == 0 or time.monotonic() > deadline:
            await asyncio.sleep(0.5)  # the batch taken off the queue last is written too
            return await writer_metrics(port)
        await asyncio.sleep(0.2)
