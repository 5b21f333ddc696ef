"""Jinja2 renders in worker processes the server can kill.

Rendered in a thread of the server, a Jinja2 message's time limit (a trace function) reached
template code only: library or C code it called (`lipsum`, a big-number power) ran on for minutes,
holding one of the few threads every render shared, and its memory stayed with the server. Here
every Jinja2 render runs in a pool of worker processes forked from a warm zygote
(`template_render_worker`), each under its own memory and CPU limits. In a worker an alarm stops
whatever Python code runs at the limit, naming the message and line; a message still running a
moment later (C code that does not look at signals) has its worker killed and replaced. Either way
the caller gets the usual 422 naming the message, nothing runs on, and memory goes back to the
system. A render that runs long drops to the lowest CPU priority, spare workers wait ready, and one
template holds at most half the pool, so a runaway delays no other prompt's render. The default
`{{ name }}` syntax is plain substitution and never comes here. Linux only (memfd, pidfd, /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mmap
import os
import pickle
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from promptdeck.domain.content_parts import content_from_data
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.prompts import Message, PromptSpec
from promptdeck.domain.templating import RENDER_SECONDS
from promptdeck.engine.template_render_worker import HEADER, PROGRESS

log = logging.getLogger("promptdeck.template_renders")

WORKER = "promptdeck.engine.template_render_worker"
MOST_WORKERS = 8  # renders at once; one more waits for one to end (at most a time limit)
SPARE_WORKERS = 2  # started ahead, so a render never waits for a process to start
KILL_AFTER = RENDER_SECONDS + 0.25  # per message; the worker's own alarm usually stops it first
SLOW_AFTER = 0.1  # a render still running then drops to the lowest CPU priority
LOWEST_PRIORITY = 19
IDLE_SECONDS = 60.0  # workers beyond the spares stop after this long unused
START_SECONDS = 30.0
LARGEST_ANSWER = 64 * 1024 * 1024
WORKER_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")  # and PYTHON*, LC_*: no secrets


def _worker_env() -> dict[str, str]:
    """What a worker needs to start, and none of the server's settings or keys; its module path is
    the server's own, so it runs the same code."""
    env = {k: v for k, v in os.environ.items() if k in WORKER_ENV or k.startswith(("PYTHON", "LC_"))}
    env["PYTHONPATH"] = os.pathsep.join(path or os.getcwd() for path in sys.path)
    return env


class WorkerGone(Exception):
    """The worker ended, or said something that is not an answer."""


@dataclass(eq=False)
class _Zygote:
    """The process every worker is forked from: started once, warm, so a worker takes milliseconds
    to start instead of a new interpreter's quarter second (and shares its memory until written)."""

    process: asyncio.subprocess.Process
    control: socket.socket

    @classmethod
    async def start(cls) -> _Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                WORKER,
                str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                env=_worker_env(),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a Ctrl-C meant for the server reaches it alone; this ends with it
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours)

    def fork(self, channel: socket.socket, progress: int) -> None:
        socket.send_fds(self.control, [b"w"], [channel.fileno(), progress])

    async def stop(self) -> None:
        self.control.close()  # the zygote ends when its socket does (a kill could reap it early)
        try:
            async with asyncio.timeout(5):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass(eq=False)
class _Worker:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    progress: mmap.mmap  # shared with the worker: the message it renders, since when
    pid: int = 0
    pidfd: int = -1  # kills this process and no other, even once its pid is reused
    idle_since: float = 0.0
    slow: bool = False  # its priority was lowered for a long render: not used again
    overran: bool = False  # killed for passing a message's time limit
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def send(self, job: bytes) -> None:
        PROGRESS.pack_into(self.progress, 0, -1, time.monotonic())
        self.writer.write(HEADER.pack(len(job)) + job)
        self.timer = asyncio.get_running_loop().call_later(SLOW_AFTER, self._check)

    async def receive(self) -> dict[str, Any]:
        try:
            (size,) = HEADER.unpack(await self.reader.readexactly(HEADER.size))
            if size > LARGEST_ANSWER:
                raise WorkerGone(f"an answer of {size} bytes")
            body = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WorkerGone("the worker ended") from exc
        finally:
            if self.timer is not None:
                self.timer.cancel()
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = json.loads(body)  # a lone surrogate, escaped by the worker's fallback
        if not isinstance(answer, dict):
            raise WorkerGone("an answer that is not an object")
        return answer

    def message(self) -> int | None:
        index = int(PROGRESS.unpack_from(self.progress)[0])
        return None if index < 0 else index

    def _check(self) -> None:
        """Lower a long render's priority, then kill it once its current message is past its limit."""
        if not self.slow:
            self.slow = True
            with contextlib.suppress(OSError):  # the pidfd says the pid is still this worker's
                signal.pidfd_send_signal(self.pidfd, 0)
                os.setpriority(os.PRIO_PROCESS, self.pid, LOWEST_PRIORITY)
        due = PROGRESS.unpack_from(self.progress)[1] + KILL_AFTER
        if time.monotonic() < due:
            self.timer = asyncio.get_running_loop().call_later(due - time.monotonic(), self._check)
        else:
            self.overran = True
            self.kill()

    def kill(self) -> None:
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self.writer.close()

    def close(self) -> None:
        self.kill()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


@dataclass
class _Slot:
    """Renders of one template at a time: at most `limit`, the rest wait here."""

    free: asyncio.Semaphore
    users: int = 0


class TemplateRenders:
    """The pool. `render_messages` is `domain.inputs.render_messages` for a Jinja2 version."""

    def __init__(self, most: int = MOST_WORKERS, spare: int = SPARE_WORKERS) -> None:
        self.most, self.spare = most, spare
        self._capacity = asyncio.Semaphore(most)
        self._zygote: _Zygote | None = None
        self._zygote_starting = asyncio.Lock()
        self._idle: list[_Worker] = []  # the most recently used last
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._per_template: dict[Hashable, _Slot] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in list(self._workers):
            self._discard(worker)
        self._idle.clear()
        if self._zygote is not None:
            await self._zygote.stop()
            self._zygote = None

    async def render_messages(self, spec: PromptSpec, values: Mapping[str, Any]) -> list[Message]:
        """The version's messages rendered, or `ValidationFailed` naming each message that failed."""
        job = pickle.dumps((spec, dict(values)), protocol=pickle.HIGHEST_PROTOCOL)
        async with self._template_slot(spec.messages), self._capacity:
            worker = self._idle_worker() or await self._start()
            self._top_up()
            answer = await self._run(worker, job)
        if "messages" in answer:
            return [Message(str(role), content_from_data(content)) for role, content in answer["messages"]]
        if "problem" in answer:
            raise ValidationFailed(str(answer["problem"]), details=answer.get("details"))
        raise RuntimeError(f"a template render worker answered {sorted(answer)}")

    async def _run(self, worker: _Worker, job: bytes) -> dict[str, Any]:
        """One job's answer. A worker that overran, ended, ran long or whose caller went away is
        killed; one that answered in time is used again."""
        answer: dict[str, Any] | None = None
        try:
            worker.send(job)
            answer = await worker.receive()
        except WorkerGone:
            if worker.overran:
                raise _stopped(worker.message(), f"took longer than {RENDER_SECONDS:g} s") from None
            log.warning("a template render worker ended in message %s", worker.message(), exc_info=True)
            raise _stopped(worker.message(), "used more memory or CPU time than a render may") from None
        finally:
            if answer is not None and not answer.get("retire") and not worker.slow:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
                self._schedule_sweep()
            else:
                self._discard(worker)
        return answer

    @contextlib.asynccontextmanager
    async def _template_slot(self, key: Hashable) -> AsyncIterator[None]:
        """At most half the pool renders one template at a time: the rest stays for the others."""
        slot = self._per_template.get(key)
        if slot is None:
            slot = self._per_template[key] = _Slot(asyncio.Semaphore(max(1, self.most // 2)))
        slot.users += 1
        try:
            async with slot.free:
                yield
        finally:
            slot.users -= 1
            if not slot.users:
                del self._per_template[key]

    def _idle_worker(self) -> _Worker | None:
        while self._idle:
            worker = self._idle.pop()
            if not worker.reader.at_eof():
                return worker
            self._discard(worker)  # ended while idle (killed from outside)
        return None

    async def _start(self) -> _Worker:
        """A new worker, forked by the zygote; if that fails, once more by a new zygote."""
        zygote = await self._running_zygote()
        try:
            return await self._fork(zygote)
        except (OSError, WorkerGone):  # it ended, stalled, or its fork did not start
            self._forget(zygote)
            return await self._fork(await self._running_zygote())

    async def _fork(self, zygote: _Zygote) -> _Worker:
        ours, theirs = socket.socketpair()
        progress_fd = os.memfd_create("template-render-progress")
        try:
            os.ftruncate(progress_fd, PROGRESS.size)
            progress = mmap.mmap(progress_fd, PROGRESS.size)
            zygote.fork(theirs, progress_fd)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(progress_fd)
        reader, writer = await asyncio.open_connection(sock=ours)
        worker = _Worker(reader, writer, progress)
        self._workers.add(worker)
        try:
            async with asyncio.timeout(START_SECONDS):
                ready = await worker.receive()
            worker.pid = int(ready["ready"])
            worker.pidfd = os.pidfd_open(worker.pid)
        except BaseException:
            self._discard(worker)
            raise
        return worker

    async def _running_zygote(self) -> _Zygote:
        async with self._zygote_starting:
            if self._zygote is None or self._zygote.process.returncode is not None:
                self._zygote = await _Zygote.start()
            return self._zygote

    def _forget(self, zygote: _Zygote) -> None:
        if self._zygote is zygote:
            self._zygote = None
            self._background(zygote.stop())

    def _top_up(self) -> None:
        """Start workers in the background until `spare` of them wait idle."""
        while not self._closed and len(self._idle) + self._starting < self.spare:
            self._starting += 1
            self._background(self._add_spare())

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add_spare(self) -> None:
        try:
            worker = await self._start()
        except Exception:
            log.exception("could not start a template render worker")
            return
        finally:
            self._starting -= 1
        worker.idle_since = time.monotonic()
        self._idle.insert(0, worker)

    def _discard(self, worker: _Worker) -> None:
        worker.close()
        self._workers.discard(worker)

    def _schedule_sweep(self) -> None:
        if self._sweep is None and len(self._idle) > self.spare:
            self._sweep = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._retire_idle)

    def _retire_idle(self) -> None:
        """Stop the workers a burst started that nothing has used for `IDLE_SECONDS`."""
        self._sweep = None
        cutoff = time.monotonic() - IDLE_SECONDS
        while len(self._idle) > self.spare and self._idle[0].idle_since < cutoff:
            self._discard(self._idle.pop(0))
        self._schedule_sweep()


def _stopped(index: int | None, why: str) -> ValidationFailed:
    problem = (f"messages[{index}]: " if index is not None else "") + f"stopped: {why}"
    return ValidationFailed("template error: " + problem, details={"template": [problem]})


# One pool per event loop, that is per server: started by its first Jinja2 render (a server whose
# prompts use none starts no process), closed with the server's services.
_POOLS: dict[asyncio.AbstractEventLoop, TemplateRenders] = {}


def _pool() -> TemplateRenders:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = TemplateRenders()
    return pool


async def close_pool() -> None:
    pool = _POOLS.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()


async def render_messages(spec: PromptSpec, values: Mapping[str, Any]) -> list[Message]:
    """The messages of a Jinja2 version, rendered in this server's worker pool."""
    return await _pool().render_messages(spec, values)
