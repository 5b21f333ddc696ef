"""`promptdeck serve --workers N`: N server processes on one port, started and stopped together.

The supervisor (the process `serve` started, after it migrated the database once) forks N
workers. Each builds its own app, with its own run writer and caches, binds its own listening
socket to the port with SO_REUSEPORT, and serves it with `serving.run`: the same uvicorn
configuration, slow-client protocol and graceful shutdown as a single process. The kernel spreads
new connections over the workers' sockets. SIGTERM or SIGINT to the supervisor reaches every
worker, and each drains its run writer before it exits; the supervisor exits when all have.

Why not uvicorn's own `workers=`: its supervisor starts fresh interpreters that import the app by
name and unpickle the configuration, which cannot carry the protocol class `serving` makes per
server; and with one listening socket shared by all, asyncio accepts a whole burst of
connections in whichever worker wakes first, so a pool of keep-alive clients can land on one.

A worker that dies (killed, crashed) is replaced by a new one; a worker that could not start
(uvicorn's status 3: the database unreachable, say), or more than `RESTARTS` deaths within
`RESTART_WINDOW` seconds, stops the others gracefully and the supervisor exits non-zero, for
systemd or the orchestrator to restart the whole (docs/deploy.md "Several workers").

Caches stay correct across workers through change events: over Redis when PROMPTDECK_REDIS_URL
is set, else over the workers' Unix sockets in a directory made here (engine/local_change_bus.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import logging.config
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from promptdeck.config import Settings

log = logging.getLogger("promptdeck.workers")

STARTUP_FAILURE = 3  # as uvicorn's (serving.py): the server could not start
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTARTS, RESTART_WINDOW = 5, 60.0  # more deaths than this within the window: the server stops
ServeOne = Callable[[socket.socket, Path], None]  # serve on a bound socket, meeting the others in a directory


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (not yet listening: uvicorn listens
    once its app has started, so a worker joins the port only when it can answer)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Workers:
    """The supervisor: forks the workers, forwards stop signals, and waits for them all."""

    def __init__(
        self, count: int, holder: socket.socket, host: str, serve_one: ServeOne, directory: Path
    ) -> None:
        self.count, self.holder, self.host = count, holder, host
        self.port: int = holder.getsockname()[1]
        self.serve_one = serve_one
        self.directory = directory
        self.children: set[int] = set()
        self.stopping = False
        self.failure = 0  # the first abnormal exit status of a worker
        self.deaths: deque[float] = deque(maxlen=RESTARTS + 1)  # when workers died, latest last

    def run(self) -> int:
        """Serve until stopped; the exit status (0, or non-zero when a worker failed)."""
        previous = {sig: signal.signal(sig, self._stop_signal) for sig in STOP_SIGNALS}
        try:
            for _ in range(self.count):
                if self.stopping:
                    break
                self.children.add(self._fork())
            log.info("serving with %d workers (pids %s)", len(self.children), sorted(self.children))
            if self.stopping:
                self.stop()  # a signal came while forking: reach the late ones too
            while self.children:
                pid, status = os.wait()  # a signal's handler runs, and the wait resumes (PEP 475)
                self.children.discard(pid)
                self._ended(pid, os.waitstatus_to_exitcode(status))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.failure == 0:
            return 0
        return STARTUP_FAILURE if self.failure == STARTUP_FAILURE else 1

    def stop(self) -> None:
        """Ask every worker to shut down gracefully (each drains its run writer)."""
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("%s: stopping %d workers gracefully", signal.Signals(signum).name, len(self.children))
        self.stop()

    def _ended(self, pid: int, code: int) -> None:
        with contextlib.suppress(FileNotFoundError):  # its change-event socket, if it died holding it
            (self.directory / f"{pid}.sock").unlink()
        if self.stopping:
            if code != 0 and -code not in STOP_SIGNALS:  # uvicorn re-raises the signal it stopped on
                log.warning("worker %d exited (%s) while stopping", pid, _describe(code))
                self.failure = self.failure or code
            return
        now = time.monotonic()
        self.deaths.append(now)
        if code == STARTUP_FAILURE or (len(self.deaths) > RESTARTS and now - self.deaths[0] < RESTART_WINDOW):
            why = (
                "could not start"
                if code == STARTUP_FAILURE
                else f"is the {RESTARTS + 1}th to die within a minute"
            )
            log.error("worker %d exited (%s) and %s: stopping the others", pid, _describe(code), why)
            self.failure = self.failure or code or 1
            self.stop()
            return
        log.error("worker %d exited (%s): starting another", pid, _describe(code))
        self.children.add(self._fork())
        if self.stopping:
            self.stop()  # a signal came while forking: reach the new one too

    def _fork(self) -> int:
        """A new worker process; its pid. Stop signals are held across the fork so that none
        reaches the child before it has given up the supervisor's handler."""
        supervisor = os.getpid()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._be_worker(supervisor)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return pid

    def _be_worker(self, supervisor: int) -> NoReturn:
        code = 1
        try:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)  # until uvicorn installs its own
            stop_with(supervisor)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            self.holder.close()  # the supervisor's; this worker binds its own
            self.serve_one(bound_socket(self.host, self.port), self.directory)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)  # never back into the supervisor's code (its stack is copied here)


PR_SET_PDEATHSIG = 1  # Linux prctl(2): the signal a process gets when its parent dies


def stop_with(supervisor: int) -> None:
    """A worker does not outlive its supervisor: on Linux the kernel sends it SIGTERM when the
    supervisor dies, even killed with SIGKILL, so the worker drains its run writer and exits
    instead of serving on unsupervised (holding the port). Elsewhere a worker whose supervisor
    was killed must be stopped itself."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before that was asked for: the signal never comes
        os.kill(os.getpid(), signal.SIGTERM)  # pending until the mask is lifted


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


def serve_workers(
    settings: Settings, host: str, port: int, count: int, serve_one: ServeOne, log_config: dict[str, Any]
) -> int:
    """Serve with `count` worker processes on one port; the exit status. The port is held by
    the supervisor for as long as it runs (bound, never listening), so a port in use is found
    here, and port 0 picks one port for all the workers."""
    logging.config.dictConfig(log_config)
    if not hasattr(os, "fork") or not hasattr(socket, "SO_REUSEPORT"):
        log.error("--workers above 1 needs fork and SO_REUSEPORT (Linux, macOS); run one process per port")
        return STARTUP_FAILURE
    try:
        holder = bound_socket(host, port)
    except OSError as exc:
        log.error("cannot bind to %s:%d: %s", host, port, exc)
        return STARTUP_FAILURE
    if not settings.redis_url:
        log.warning(
            "without PROMPTDECK_REDIS_URL each of the %d workers counts rate limits and budgets on "
            'its own: a limit admits up to %d times as much (docs/deploy.md "Several workers")',
            count,
            count,
        )
    directory = Path(tempfile.mkdtemp(prefix="promptdeck-workers-"))  # short: a socket path is ≤ 107 bytes
    try:
        return Workers(count, holder, host, serve_one, directory).run()
    finally:
        holder.close()
        shutil.rmtree(directory, ignore_errors=True)
