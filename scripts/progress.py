"""Run a long build quietly, showing how far it has got: `python scripts/progress.py LABEL -- CMD...`.

Ninja's `[done/total]` lines become one progress line with the elapsed time (rewritten in
place on a terminal, every 10 % otherwise); a build that prints nothing for a while still
shows it is alive. The whole output is kept, and its end is printed if the command fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

STEP = re.compile(rb"^\s*\[(\d+)/(\d+)\]")
HEARTBEAT_S = 30.0
TAIL_LINES = 80


@dataclass
class Shown:
    """What the progress line last said, and when."""

    at: float
    line: str = ""
    decile: int = -1


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 1:
        print("usage: progress.py LABEL -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    label, command = argv[0], argv[2:]
    tty = sys.stdout.isatty()
    started = time.monotonic()
    shown = Shown(at=started)
    tail: deque[bytes] = deque(maxlen=TAIL_LINES)
    lock = threading.Lock()

    def show(text: str) -> None:
        with lock:
            elapsed = time.monotonic() - started
            line = f"  {label}: {text}, {int(elapsed // 60)}m{int(elapsed % 60):02d}s"
            print(f"\r{line:<78}" if tty else line, end="" if tty else "\n", flush=True)
            shown.line, shown.at = text, time.monotonic()

    def heartbeat() -> None:
        while not done.wait(5.0):
            if time.monotonic() - shown.at >= (5.0 if tty else HEARTBEAT_S):
                show(shown.line or "working")

    done = threading.Event()
    threading.Thread(target=heartbeat, daemon=True).start()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    for raw in process.stdout:
        tail.append(raw)
        step = STEP.match(raw)
        if step is None:
            continue
        current, total = int(step[1]), int(step[2])
        decile = current * 10 // max(total, 1)
        if tty or decile != shown.decile:
            shown.decile = decile
            show(f"{current}/{total} compiled ({current * 100 // max(total, 1)} %)")
    code = process.wait()
    done.set()
    if tty:
        print()
    if code != 0:
        sys.stdout.buffer.write(b"".join(tail))
        print(f"{label}: failed (exit status {code}); the end of its output is above", file=sys.stderr)
    else:
        show("done")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
