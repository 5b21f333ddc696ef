"""A stream's body chunks in groups: every chunk its source can give without waiting, at once.

One read from an upstream often holds many events (under load, or from a fast upstream: one
read carried all 20 of the benchmark's deltas), and each went out in an ASGI `send` of its own:
a system call and a TCP segment per event. Here the body is stepped by hand: a step that
finishes without suspending gave a chunk that was ready, and the next step is taken at once. A
group goes out when a step must wait (nothing is held back for company: what is ready goes
before the wait), when it reaches `MAX_GROUP_BYTES`, or at the end. The first chunk goes alone,
so the first byte is never later than before. Measured in bench/README.md ("Ready chunks").

A step that must wait is awaited as if directly (`_Rest`): the futures it waits on go to the
task, and the task's answers and exceptions (a cancellation) back into it. If the group is not
taken while a step waits (the caller left), that step is cancelled and the body closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from typing import Any

MAX_GROUP_BYTES = 64 * 1024  # a group goes out at this size: bounded memory and delay


async def ready_chunks(body: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """`body`'s chunks, those ready together joined into one (the first on its own); closes
    `body` however it ends."""
    step = body.__anext__
    group: list[bytes] = []
    size = 0
    try:
        yield await step()
        while True:
            pending: Any = step()  # an `asend` awaitable, driven by hand
            try:
                waits_on = pending.send(None)  # run the step until it is done or must wait
            except StopIteration as done:  # it was ready
                group.append(done.value)
                size += len(done.value)
                if size >= MAX_GROUP_BYTES:
                    yield b"".join(group)
                    group, size = [], 0
                continue
            except StopAsyncIteration:
                raise
            except BaseException:  # the body failed: what it gave before still goes out first
                if group:
                    yield b"".join(group)
                raise
            if group:  # it must wait: what is ready goes first
                try:
                    yield b"".join(group)
                except BaseException:
                    await _abandon(pending)
                    raise
                group, size = [], 0
            chunk = await _Rest(pending, waits_on)
            group.append(chunk)
            size += len(chunk)
    except StopAsyncIteration:
        if group:
            yield b"".join(group)
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


async def _abandon(pending: Any) -> None:
    """A waiting step nobody will read: cancelled where it waits, and run to its end."""
    with contextlib.suppress(BaseException):
        await _Rest(pending, pending.throw(asyncio.CancelledError()))


class _Rest:
    """The rest of a step already started, awaited: what it waits on goes to the task, and the
    task's answer (a result, or an exception such as a cancellation) goes back into it."""

    __slots__ = ("_pending", "_waits_on")

    def __init__(self, pending: Any, waits_on: Any) -> None:
        self._pending = pending
        self._waits_on = waits_on

    def __await__(self) -> Generator[Any, Any, bytes]:
        waits_on = self._waits_on
        while True:
            try:
                answer = yield waits_on
            except BaseException as exc:  # every exception goes into the step
                try:
                    waits_on = self._pending.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                continue
            try:
                waits_on = self._pending.send(answer)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
