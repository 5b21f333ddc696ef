"""What holds promptdeck's memory: resident memory per import, and the largest live allocations
after startup and after a load burst.

* Imports: a child process imports, one at a time, every module that `import promptdeck.app`
  loads, in the order their imports completed (`-X importtime`: a module's dependencies come
  first), reading VmRSS after each; the growth is summed per package (`promptdeck.<layer>` for
  ours).
* Load: the fake upstream and a real `promptdeck serve` (as gateway_overhead.py starts them),
  32 callers sending non-streaming then streaming requests to the Fetch Hive endpoint. VmRSS and
  VmHWM after startup and after the burst, from an untraced server; then the same with
  `PYTHONTRACEMALLOC` set, whose live allocations are grouped by package (tracemalloc's own
  overhead inflates that server's RSS, so its RSS is not reported).

    .venv/bin/python bench/import_memory.py [--requests 4000] [--top 25] [--no-load] [--no-trace]

Writes bench/results/import_memory_latest.json. See bench/README.md, "Memory".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import subprocess
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

from cpu_meter import background_load
from fake_upstream import run_fast
from gateway_processes import promptdeck_server, start_upstream, stop_process, writer_drained, writer_metrics
from gateway_targets import promptdeck_target, sanity_check
from load_client import close_all, closed_loop, connect
from memory_meter import memory_mb
from run_meta import ROOT, run_meta

RESULTS = Path(__file__).resolve().parent / "results"
DELTAS = 20  # a stream of 20 chunks, as in issue 20
PYTHON = str(ROOT / ".venv" / "bin" / "python")
MEASURE_IMPORTS = r"""
import importlib, json, sys
def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
steps = [("(interpreter)", rss_kb())]
for name in json.loads(sys.argv[1]):
    if name in sys.modules:
        continue
    try:
        importlib.import_module(name)
    except Exception:
        continue
    steps.append((name, rss_kb()))
print(json.dumps(steps))
"""
# Installed in the traced server (PYTHONPATH): a thread that writes a tracemalloc snapshot each
# time the trigger file appears (a thread, not a signal handler: the event loop is left alone).
SITECUSTOMIZE = """
import os, threading, time, tracemalloc
def _watch(path):
    while True:
        time.sleep(0.2)
        if os.path.exists(path + ".want"):
            tracemalloc.take_snapshot().dump(path + ".part")
            with open(path + ".sqlite", "w") as out:  # SQLite's heap (page and statement caches)
                out.write(str(_sqlite_used()))
            os.replace(path + ".part", path)
            os.remove(path + ".want")
def _sqlite_used():
    import ctypes, _sqlite3
    used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    used.restype = ctypes.c_int64
    return used()
_path = os.environ.pop("PROMPTDECK_BENCH_SNAPSHOT", None)  # popped: the server's children untraced
if _path is not None and "serve" in os.sys.argv:
    tracemalloc.start()
    threading.Thread(target=_watch, args=(_path,), daemon=True).start()
"""


def import_order(module: str) -> list[str]:
    """The modules `import <module>` loads, in the order their imports completed."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
    )
    return [m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M)]


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "promptdeck" and len(parts) > 2 else parts[0]


def import_costs(module: str) -> dict[str, Any]:
    """RSS growth (MiB) per package while `module` and everything it needs are imported."""
    order = import_order(module)
    done = subprocess.run(
        [PYTHON, "-c", MEASURE_IMPORTS, json.dumps(order)], capture_output=True, text=True, check=True
    )
    steps = json.loads(done.stdout)
    per_package: dict[str, float] = defaultdict(float)
    for (_, before), (name, after) in itertools.pairwise(steps):
        per_package[package_of(name)] += (after - before) / 1024
    ranked = sorted(per_package.items(), key=lambda item: -item[1])
    return {
        "interpreter_mb": round(steps[0][1] / 1024, 1),
        "total_mb": round(steps[-1][1] / 1024, 1),
        "modules": len(order),
        "per_package_mb": {name: round(mb, 1) for name, mb in ranked if mb >= 0.05},
    }


def package_of_file(filename: str) -> str:
    """`site-packages/sqlalchemy/orm/x.py` -> sqlalchemy; `src/promptdeck/web/x.py` -> promptdeck.web."""
    path = Path(filename)
    parts = path.parts
    for anchor in ("site-packages", "src"):
        if anchor in parts:
            rest = parts[parts.index(anchor) + 1 :]
            if rest and rest[0] == "promptdeck" and len(rest) > 2:
                return f"promptdeck.{rest[1]}"
            return rest[0].removesuffix(".py") if rest else filename
    return "(stdlib) " + path.name if "python3" in filename else filename


def top_allocations(snapshot: tracemalloc.Snapshot, top: int) -> dict[str, Any]:
    """Live traced memory per package and the largest allocation sites (MiB)."""
    stats = snapshot.statistics("lineno")
    per_package: dict[str, float] = defaultdict(float)
    for stat in stats:
        per_package[package_of_file(stat.traceback[0].filename)] += stat.size / 2**20
    ranked = sorted(per_package.items(), key=lambda item: -item[1])[:top]
    return {
        "traced_mb": round(sum(stat.size for stat in stats) / 2**20, 1),
        "per_package_mb": {name: round(mb, 2) for name, mb in ranked},
        "sites": [
            {"site": f"{s.traceback[0].filename}:{s.traceback[0].lineno}", "mb": round(s.size / 2**20, 2)}
            for s in stats[:top]
        ],
    }


async def burst(port: int, key: str, requests: int, callers: int) -> int:
    """`requests` non-streaming, then `requests` streaming requests from `callers` connections;
    returns, once the run writer has written them, the most runs its queue held meanwhile."""
    target = promptdeck_target(port, key)
    first = await connect(port)  # a traced server's first call is slow: no 10 s limit on it
    await asyncio.wait_for(first.send(target.plain), 120)
    close_all([first])
    await sanity_check(target, deltas=DELTAS)
    most_queued = 0

    async def watch_queue() -> None:
        nonlocal most_queued
        while True:
            most_queued = max(most_queued, (await writer_metrics(port)).get("queued", 0))
            await asyncio.sleep(0.1)

    watcher = asyncio.ensure_future(watch_queue())
    try:
        for request in (target.plain, target.streaming):
            connections = [await connect(port) for _ in range(callers)]
            try:
                tally = await closed_loop(port, connections, request, requests, 60.0)
            finally:
                close_all(connections)
            if tally.errors:
                raise SystemExit(f"{tally.errors} errors under load: {tally.error_samples}")
    finally:
        watcher.cancel()
    await writer_drained(port)
    return most_queued


def process_state(pid: int) -> dict[str, float]:
    """Resident memory now and at its highest (MiB), its anonymous part (heaps: Python's, SQLite's,
    the threads') and its file-backed part (mapped libraries), and the process's threads."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return memory_mb(pid) | {
        "anon_mb": round(int(fields["RssAnon"].split()[0]) / 1024, 1),
        "file_mb": round(int(fields["RssFile"].split()[0]) / 1024, 1),
        "threads": int(fields["Threads"]),
    }


def measure_server(
    upstream_port: int, requests: int, callers: int, traced: bool, top: int, extra_env: dict[str, str]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="promptdeck-memory-") as scratch:
        env = dict(extra_env)
        snapshot_path = Path(scratch) / "snapshot"
        if traced:
            (Path(scratch) / "sitecustomize.py").write_text(SITECUSTOMIZE)
            env |= {"PYTHONPATH": scratch, "PROMPTDECK_BENCH_SNAPSHOT": str(snapshot_path)}

        def allocations() -> dict[str, Any]:
            snapshot_path.unlink(missing_ok=True)
            Path(f"{snapshot_path}.want").touch()
            deadline = time.monotonic() + 60
            while not snapshot_path.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("no tracemalloc snapshot from the server")
                time.sleep(0.2)
            found = top_allocations(tracemalloc.Snapshot.load(str(snapshot_path)), top)
            sqlite_bytes = int(Path(f"{snapshot_path}.sqlite").read_text())
            return {"sqlite_mb": round(sqlite_bytes / 2**20, 1)} | found

        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        with promptdeck_server(None, upstream_port, data_dir, env) as (process, port, key):
            result: dict[str, Any] = {}
            result["startup"] = allocations() if traced else process_state(process.pid)
            result["most_runs_queued"] = run_fast(burst(port, key, requests, callers))
            result["after_load"] = allocations() if traced else process_state(process.pid)
            return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--module", default="promptdeck.app", help="what the server imports")
    parser.add_argument("--requests", type=int, default=4000, help="per kind (non-streaming, streaming)")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-load", action="store_true", help="imports only")
    parser.add_argument("--no-trace", action="store_true", help="no tracemalloc run")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the server (repeatable)")
    parser.add_argument("--output", type=Path, default=RESULTS / "import_memory_latest.json")
    args = parser.parse_args(argv)
    extra_env = dict(item.split("=", 1) for item in args.env)
    result: dict[str, Any] = {"meta": run_meta(None, background_load()), "imports": import_costs(args.module)}
    print(json.dumps(result["imports"], indent=1))
    if not args.no_load:
        upstream, upstream_port = start_upstream(None, DELTAS, 0.0)
        try:
            untraced = measure_server(upstream_port, args.requests, args.callers, False, args.top, extra_env)
            result["rss"] = untraced
            print(json.dumps(result["rss"], indent=1))
            if not args.no_trace:
                traced = measure_server(upstream_port, args.requests, args.callers, True, args.top, extra_env)
                result["tracemalloc"] = traced
                print(json.dumps(result["tracemalloc"], indent=1))
        finally:
            stop_process(upstream)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
