"""When, on what and with which code a benchmark ran, as every report here states it."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_meta(pin: Any, idle_load: float) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **git_state(),
        "pythonpath": os.environ.get("PYTHONPATH") or None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pinned": pin,
        "background_load_cores": idle_load,
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and which files under src/ differed from it (a dirty tree is not the commit)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, timeout=10, check=False
            )
        except OSError:
            return ""
        return done.stdout.decode()

    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "src_changed": changed}


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
