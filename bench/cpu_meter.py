"""CPU accounting for the benchmarks: per core from /proc/stat, per process from schedstat.

A process's CPU per request is robust to other load on the machine, where latency and
throughput are not; what the cores did beyond the benchmark's processes is that other load,
reported so a noisy run shows as one.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def core_ticks() -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks per core, from /proc/stat."""
    result = {}
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                ticks = [int(v) for v in values[:8]]
                idle = ticks[3] + ticks[4]
                result[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return result


def process_cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process, in nanoseconds (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def background_load(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes just before the run: above ~0.2 the figures are noisy."""
    before = core_ticks()
    time.sleep(seconds)
    after = core_ticks()
    busy = sum(after[c][0] - before[c][0] for c in after)
    total = sum(after[c][1] - before[c][1] for c in after)
    return round(busy / total * len(after), 2) if total else 0.0


@dataclass
class CpuMeter:
    """CPU used during one phase: per core, and by each process of the benchmark. What the cores
    did beyond our processes is other load on the machine, which makes a run noisy."""

    pids: dict[str, int]
    start_wall: float = 0.0
    start_cores: dict[int, tuple[int, int]] = field(default_factory=dict)
    start_procs: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.start_wall = time.perf_counter()
        self.start_cores = core_ticks()
        self.start_procs = {name: process_cpu_ns(pid) for name, pid in self.pids.items()}

    def spent_ns(self, name: str) -> int:
        """CPU one process has used since `start`."""
        return process_cpu_ns(self.pids[name]) - self.start_procs[name]

    def stop(self, requests: int) -> dict[str, Any]:
        """`<process>_cpu_us_per_request` for each process; with a phase of 0.5 s or more, also
        `core<N>_busy` (share of the core) and `other_load_cores`."""
        wall = time.perf_counter() - self.start_wall
        spent = {name: self.spent_ns(name) for name in self.pids}
        cores = core_ticks()
        figures: dict[str, Any] = {
            f"{name}_cpu_us_per_request": round(ns / 1000 / requests, 1) if requests else None
            for name, ns in spent.items()
        }
        if wall < 0.5:  # /proc/stat counts in 10 ms ticks: too coarse for a short phase
            return figures
        busy_total = 0.0
        for core, (b1, t1) in cores.items():
            b0, t0 = self.start_cores.get(core, (b1, t1))
            share = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
            figures[f"core{core}_busy"] = round(share, 3)
            busy_total += share
        figures["other_load_cores"] = round(max(0.0, busy_total - sum(spent.values()) / 1e9 / wall), 2)
        return figures
