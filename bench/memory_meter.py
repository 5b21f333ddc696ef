"""A process's resident memory, as the benchmarks report it."""

from __future__ import annotations


def memory_mb(pid: int) -> dict[str, float]:
    """The process's resident memory now (VmRSS) and at its highest so far (VmHWM), in MiB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found["rss_mb" if name == "VmRSS" else "hwm_mb"] = round(int(value.split()[0]) / 1024, 1)
    return found
