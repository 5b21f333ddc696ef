"""The body's chunks that are ready together go out as one; nothing ready waits on what is not,
and a step left waiting when the caller goes is cancelled and the body closed
(surfaces/ready_chunks.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from promptdeck.surfaces import ready_chunks as module
from promptdeck.surfaces.ready_chunks import ready_chunks


class Body:
    """Yields `ready` chunks at once, then waits for `more` before each of `later`; records
    how it ended."""

    def __init__(self, ready: list[bytes], later: list[bytes] | None = None) -> None:
        self.ready, self.later = ready, later or []
        self.more = asyncio.Event()
        self.ended: str | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.ready:
                yield chunk
            for chunk in self.later:
                await self.more.wait()
                self.more.clear()
                yield chunk
            self.ended = "finished"
        except asyncio.CancelledError:
            self.ended = "cancelled"
            raise
        except GeneratorExit:
            self.ended = "closed"
            raise


async def test_the_first_chunk_goes_alone_and_the_ready_ones_together() -> None:
    body = Body([b"a", b"b", b"c", b"d"])
    assert [chunk async for chunk in ready_chunks(body.chunks())] == [b"a", b"bcd"]
    assert body.ended == "finished"


async def test_what_is_ready_goes_out_before_a_wait() -> None:
    body = Body([b"a", b"b", b"c"], later=[b"d", b"e"])
    chunks = ready_chunks(body.chunks())
    assert await chunks.__anext__() == b"a"
    assert await asyncio.wait_for(chunks.__anext__(), 1) == b"bc"  # not held for "d"
    waiting = asyncio.ensure_future(chunks.__anext__())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    body.more.set()
    assert await asyncio.wait_for(waiting, 1) == b"d"  # "e" must wait: "d" goes out now
    body.more.set()
    assert [chunk async for chunk in chunks] == [b"e"]
    assert body.ended == "finished"


async def test_a_group_goes_out_at_its_size_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "MAX_GROUP_BYTES", 3)
    body = Body([b"first"] + [b"x"] * 7)
    assert [chunk async for chunk in ready_chunks(body.chunks())] == [b"first", b"xxx", b"xxx", b"x"]


async def test_a_failing_body_still_delivers_what_it_gave_before() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        raise RuntimeError("encoder broke")

    received = []
    with pytest.raises(RuntimeError, match="encoder broke"):
        async for chunk in ready_chunks(failing()):
            received.append(chunk)
    assert received == [b"a", b"b"]


async def test_closing_while_a_step_waits_cancels_it_and_closes_the_body() -> None:
    body = Body([b"a", b"b"], later=[b"c"])
    chunks = ready_chunks(body.chunks())
    assert await chunks.__anext__() == b"a"
    assert await asyncio.wait_for(chunks.__anext__(), 1) == b"b"  # while the step for "c" waits
    await chunks.aclose()  # the caller left
    assert body.ended == "cancelled"


async def test_a_cancelled_reader_cancels_the_waiting_step() -> None:
    body = Body([b"a"], later=[b"b"])
    chunks = ready_chunks(body.chunks())
    assert await chunks.__anext__() == b"a"
    reading = asyncio.ensure_future(chunks.__anext__())
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert body.ended == "cancelled"


async def test_closing_before_the_first_chunk_closes_the_body() -> None:
    body = Body([b"a", b"b"])
    chunks = ready_chunks(body.chunks())
    assert await chunks.__anext__() == b"a"
    await chunks.aclose()
    assert body.ended == "closed"
