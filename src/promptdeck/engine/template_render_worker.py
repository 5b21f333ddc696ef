"""The process side of `template_renders`: a zygote that forks render workers, and the workers,
each rendering one Jinja2 job at a time under memory and CPU limits of its own.

The server runs `python -m promptdeck.engine.template_render_worker <fd>` once; `<fd>` is a
SOCK_SEQPACKET socket on which each message carries two file descriptors: a socket for one new
worker's jobs and answers, and a shared memory (`PROGRESS`) where the worker notes which message it
renders since when, read by the server when a message overruns. The zygote imports everything and
renders once before it forks, so a new worker is ready in milliseconds.

On a worker's socket, frames are a 4-byte big-endian length and a body. A job is a pickled
`(spec, values)`: it comes from the server. An answer is JSON, never pickle, because it comes from
a process that runs untrusted templates: `{"ready": pid}` once, then per job `{"messages": [[role,
content], ...]}` or `{"problem": ..., "details": ...}`, with `"retire": true` when the worker then
exits to give its memory back.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, BinaryIO

import orjson

from promptdeck.domain.content_parts import content_data
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.inputs import render_messages
from promptdeck.domain.prompts import PromptSpec
from promptdeck.domain.templating import JINJA2, RENDER_SECONDS, TemplateProblem, render_jinja

HEADER = struct.Struct(">I")
PROGRESS = struct.Struct("<qd")  # the message being rendered (-1: none yet), since when (monotonic)
MEMORY_BUDGET = 256 * 1024 * 1024  # address space a worker may take beyond what it starts with
RETIRE_AFTER_GROWTH = 128 * 1024  # KiB: a worker whose peak memory grew this much exits after answering
CPU_SLACK = 2  # seconds of CPU beyond a job's time limits before the kernel stops the worker


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's body, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def frame(answer: Mapping[str, Any]) -> bytes:
    try:
        body = orjson.dumps(answer)
    except TypeError:  # a lone surrogate from a JSON input: orjson refuses, json escapes it
        body = json.dumps(answer).encode()
    return HEADER.pack(len(body)) + body


def _out_of_time(signum: int, frame: FrameType | None) -> None:
    """SIGALRM: stop whatever Python code runs, template or library (`lipsum`), with the line it
    was on; code in C runs on until it returns, so the server kills the worker soon after."""
    raise TemplateProblem(f"took longer than {RENDER_SECONDS:g} s")


def render(spec: PromptSpec, values: Mapping[str, Any], starting: Callable[[int], None]) -> dict[str, Any]:
    """One job's answer; `starting(i)` is called as the render of message i begins. Time is kept
    by an alarm per message, not by the domain's trace function, which made renders 3-5x slower."""

    def jinja(source: str, values: Mapping[str, Any], index: int) -> str:
        starting(index)
        signal.setitimer(signal.ITIMER_REAL, RENDER_SECONDS)
        try:
            return render_jinja(source, values, index, seconds=None)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    try:
        messages = render_messages(spec, values, jinja)
    except ValidationFailed as exc:
        return {"problem": exc.message, "details": exc.details}
    return {"messages": [[m.role, content_data(m.content)] for m in messages]}


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _limit_memory() -> None:
    """Cap the address space at what the worker maps now plus `MEMORY_BUDGET`: an allocation past
    it is a MemoryError (a clear template error), never memory taken from the server."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_BUDGET, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a worker stopped for CPU dumps no core


def _limit_cpu(spec: PromptSpec) -> None:
    """Let the kernel stop a job the server failed to stop. The soft limit counts the worker's
    whole life, so it is raised for each job."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    renders = len(spec.messages) if spec.template_syntax == JINJA2 else 0
    allowed = math.ceil(usage.ru_utime + usage.ru_stime + renders * RENDER_SECONDS) + CPU_SLACK
    resource.setrlimit(resource.RLIMIT_CPU, (allowed, resource.RLIM_INFINITY))


def serve(channel: socket.socket, progress: mmap.mmap) -> None:
    """A worker: answer jobs until the server closes the socket, or until it grew too large."""
    _limit_memory()
    signal.signal(signal.SIGALRM, _out_of_time)
    start_peak = _peak_kib()
    jobs = channel.makefile("rb")
    channel.sendall(frame({"ready": os.getpid()}))
    while (job := read_frame(jobs)) is not None:
        spec, values = pickle.loads(job)
        _limit_cpu(spec)
        answer = render(spec, values, lambda index: PROGRESS.pack_into(progress, 0, index, time.monotonic()))
        answer["retire"] = _peak_kib() - start_peak > RETIRE_AFTER_GROWTH  # freed or not: give it back
        channel.sendall(frame(answer))
        if answer["retire"]:
            return


def main() -> None:
    """The zygote: fork a worker for each pair of descriptors received, until the server goes."""
    control = socket.socket(fileno=int(sys.argv[1]))
    os.dup2(2, 1)  # a stray print goes to stderr
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps ended workers
    render_jinja("{{ ready }}", {"ready": 1}, 0)  # every import a render needs, done once here
    while True:
        _, fds, _, _ = socket.recv_fds(control, 1, 2)
        if len(fds) != 2:
            return  # the server closed the socket (or sent nonsense)
        if os.fork() == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            ended = 0
            try:
                serve(socket.socket(fileno=fds[0]), mmap.mmap(fds[1], PROGRESS.size))
            except BaseException:
                traceback.print_exc()
                ended = 1
            finally:
                os._exit(ended)  # never back into the zygote's loop
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    main()
