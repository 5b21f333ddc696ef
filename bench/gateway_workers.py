"""How `promptdeck serve --workers N` scales: Fetch Hive's non-streaming invoke, 1 worker beside N.

Starts the fake upstream (fake_upstream.py) and, in turn, a seeded `promptdeck serve` with
PROMPTDECK_WORKERS=1 and =N (gateway_processes.promptdeck_server), then drives the same closed
loop of callers at `POST /v1/prompt/invoke` (the body fetch-hive-sdk sends) from this process.
Nothing is pinned: the workers, the upstream and the generator share the machine's cores, so
on a machine with N cores the workers cannot have all N. Therefore each phase also reports:

* `cpu_us_per_request`: the workers' CPU (summed, from schedstat) per request: robust to other
  load, and the same for 1 and N workers if nothing is lost to working in several processes;
* `worker_cores`: how many cores the workers kept busy, each worker's share beside it, and
  `rps_per_worker_core`: requests/s per busy worker core. Its ratio between N and 1 worker is
  the scaling efficiency the workers reached, whatever else took the cores;
* `other_load_cores`: what the cores did beyond this benchmark's processes (other users).

Repetitions alternate 1 and N workers; the median repetition (by requests/s) is reported.

    .venv/bin/python bench/gateway_workers.py [--workers 2] [--requests 8000] [--rounds 3]

Prints a Markdown table and writes bench/results/workers-latest.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from cpu_meter import CpuMeter, background_load, process_cpu_ns
from figures import percentile
from gateway_processes import promptdeck_server, start_upstream, stop_process
from gateway_targets import promptdeck_target, sanity_check
from load_client import HOST, close_all, closed_loop, connect
from run_meta import run_meta

RESULTS = Path(__file__).resolve().parent / "results"
WRITER_IDLE_S = 1.0  # the run writer flushes every 0.25 s
DELTAS = 20  # content deltas in the upstream's answer, as gateway_overhead.py


def children(pid: int) -> list[int]:
    """A process's children (the supervisor's workers), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def server_ends(port: int, client_port: int | None = None) -> set[str]:
    """The server ends of established connections to `port` (of one client port's, if given),
    as the links of the file descriptors that hold them (/proc/net/tcp)."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local == port and fields[3] == "01" and client_port in (None, remote):
            found.add(f"socket:[{fields[9]}]")
    return found


def held_by(workers: list[int], sockets: set[str]) -> dict[int, int]:
    """How many of `sockets` each worker holds."""
    held = {}
    for pid in workers:
        fds = Path(f"/proc/{pid}/fd")
        count = 0
        for fd in os.listdir(fds):
            try:
                count += os.readlink(fds / fd) in sockets
            except OSError:
                continue
        held[pid] = count
    return held


def runs_written(port: int, workers: list[int]) -> dict[int, int]:
    """Each worker's run writer's `written` count (GET /api/health on new connections until
    every worker has answered; the answering worker is the one holding the connection)."""
    written: dict[int, int] = {}
    for _ in range(200):
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            connection.request("GET", "/api/health")
            body = json.loads(connection.getresponse().read())
            assert connection.sock is not None
            sockets = server_ends(port, connection.sock.getsockname()[1])
            pid = next(pid for pid, held in held_by(workers, sockets).items() if held)
        finally:
            connection.close()
        written[pid] = body["writer"]["written"]
        if len(written) == len(workers):
            return written
    raise SystemExit(f"not every worker answered /api/health: {written}")


async def measure(workers_count: int, upstream: tuple[int, int], args: argparse.Namespace) -> dict[str, Any]:
    """One phase against a fresh `serve` with `workers_count` workers."""
    upstream_pid, upstream_port = upstream
    data_dir = Path(tempfile.mkdtemp(prefix="pd-workers-bench-"))
    env = {"PROMPTDECK_WORKERS": str(workers_count)}
    try:
        with promptdeck_server(None, upstream_port, data_dir, env) as (process, port, key):
            workers = children(process.pid) if workers_count > 1 else [process.pid]
            assert len(workers) == workers_count, f"expected {workers_count} workers, found {workers}"
            target = promptdeck_target(port, key, "fetchhive")
            await sanity_check(target, deltas=DELTAS)
            connections = [await connect(port) for _ in range(args.callers)]
            try:
                await closed_loop(port, connections, target.plain, args.warmup, args.cap)
                held = held_by(workers, server_ends(port))
                await asyncio.sleep(WRITER_IDLE_S)  # the warm-up's runs written
                written_before = runs_written(port, workers)
                pids = {f"worker{i}": pid for i, pid in enumerate(workers)}
                meter = CpuMeter(pids | {"generator": os.getpid(), "upstream": upstream_pid})
                gc.collect()
                gc.disable()
                before = {pid: process_cpu_ns(pid) for pid in workers}
                meter.start()
                started = time.perf_counter()
                tally = await closed_loop(port, connections, target.plain, args.requests, args.cap)
                wall = time.perf_counter() - started
                cpu = meter.stop(len(tally.latencies))
                spent = {pid: process_cpu_ns(pid) - before[pid] for pid in workers}
                await asyncio.sleep(WRITER_IDLE_S)
                written_after = runs_written(port, workers)
            finally:
                gc.enable()
                close_all(connections)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    done = len(tally.latencies)
    latencies = sorted(tally.latencies)
    worker_cores = sum(spent.values()) / 1e9 / wall
    rps = done / tally.elapsed_s if tally.elapsed_s else 0.0
    return {
        "workers": workers_count,
        "requests": done,
        "errors": tally.errors,
        "rps": round(rps, 1),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "cpu_us_per_request": round(sum(spent.values()) / 1000 / done, 1) if done else None,
        "worker_cores": round(worker_cores, 2),
        "each_worker_cores": [round(ns / 1e9 / wall, 2) for ns in spent.values()],
        "connections_per_worker": list(held.values()),
        "requests_per_worker": [written_after[pid] - written_before[pid] for pid in workers],
        "cpu_us_per_request_per_worker": [
            round(spent[pid] / 1000 / served, 1)
            if (served := written_after[pid] - written_before[pid])
            else None
            for pid in workers
        ],
        "rps_per_worker_core": round(rps / worker_cores, 1) if worker_cores else None,
        "generator_cpu_us_per_request": cpu.get("generator_cpu_us_per_request"),
        "upstream_cpu_us_per_request": cpu.get("upstream_cpu_us_per_request"),
        "other_load_cores": cpu.get("other_load_cores"),
    }


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ranked = sorted(runs, key=lambda run: run["rps"])
    return ranked[len(ranked) // 2] | {"rounds_rps": [run["rps"] for run in runs]}


def markdown(one: dict[str, Any], many: dict[str, Any], meta: dict[str, Any]) -> str:
    rows = [
        ("requests/s", "rps"),
        ("p50 ms", "p50_ms"),
        ("p99 ms", "p99_ms"),
        ("workers' CPU per request, µs", "cpu_us_per_request"),
        ("cores the workers kept busy", "worker_cores"),
        ("each worker's cores", "each_worker_cores"),
        ("generator connections per worker", "connections_per_worker"),
        ("requests each worker served (runs written)", "requests_per_worker"),
        ("each worker's CPU per request it served, µs", "cpu_us_per_request_per_worker"),
        ("requests/s per busy worker core", "rps_per_worker_core"),
        ("other load on the machine, cores", "other_load_cores"),
        ("requests/s of each round", "rounds_rps"),
    ]
    n = many["workers"]
    lines = [f"| Fetch Hive invoke, {meta['callers']} callers | 1 worker | {n} workers |", "|---|---:|---:|"]
    lines += [f"| {label} | {one.get(key)} | {many.get(key)} |" for label, key in rows]
    throughput = many["rps"] / one["rps"] if one["rps"] else 0.0
    per_core = (
        many["rps_per_worker_core"] / one["rps_per_worker_core"] if one.get("rps_per_worker_core") else 0.0
    )
    lines += [
        "",
        f"* requests/s, {n} workers over 1: **{throughput:.2f}x** (goal ≥ {0.9 * n:.1f}x with {n} cores "
        "to the workers alone)",
        f"* requests/s per busy worker core, {n} workers over 1: **{per_core:.2f}** (1.0: no loss to "
        "working in several processes)",
        f"* machine: {meta['cores']} cores ({meta['cpu']}), background load before the run "
        f"{meta['background_load_cores']} cores; nothing pinned",
    ]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    idle = background_load()
    upstream, upstream_port = start_upstream(None, DELTAS, 0.0)
    try:
        runs: dict[int, list[dict[str, Any]]] = {1: [], args.workers: []}
        for round_ in range(args.rounds):
            order = (1, args.workers) if round_ % 2 == 0 else (args.workers, 1)
            for count in order:
                result = await measure(count, (upstream.pid, upstream_port), args)
                runs[count].append(result)
                print(
                    f"  round {round_ + 1}, {count} worker(s): {result['rps']:>8.1f} req/s, "
                    f"{result['cpu_us_per_request']} µs CPU/req, workers on {result['worker_cores']} cores, "
                    f"other load {result['other_load_cores']}, errors {result['errors']}",
                    flush=True,
                )
    finally:
        stop_process(upstream)
    one, many = median(runs[1]), median(runs[args.workers])
    meta = run_meta(None, idle) | {"callers": args.callers, "requests": args.requests}
    print(markdown(one, many, meta))
    RESULTS.mkdir(exist_ok=True)
    report = {"meta": meta, "one_worker": one, "workers": many, "all": {str(k): v for k, v in runs.items()}}
    (RESULTS / "workers-latest.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="workers beside 1 (default 2)")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=8000, help="measured requests per phase")
    parser.add_argument("--warmup", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cap", type=float, default=30.0, help="time cap per phase, seconds")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
