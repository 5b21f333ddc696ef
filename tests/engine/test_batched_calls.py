"""engine/batched_calls.py: callers that come while a batch is on its way share the next one,
each gets its own result, and a failure reaches every caller of its batch, and no other."""

from __future__ import annotations

import asyncio

import pytest

from promptdeck.engine.batched_calls import BatchedCalls


class Store:
    """Answers each batch after the test lets it go; records the batches it was sent."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.fail_next = False

    async def send(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the store went away")
        return [item * 10 for item in items]


async def test_callers_during_a_batch_share_the_next_one() -> None:
    store = Store()
    calls = BatchedCalls(store.send)
    first = calls.submit(1)
    await asyncio.sleep(0)  # the first batch leaves alone
    rest = [calls.submit(n) for n in range(2, 6)]
    store.gate.set()
    assert await first == 10 and [await r for r in rest] == [20, 30, 40, 50]
    assert store.batches == [[1], [2, 3, 4, 5]]


async def test_a_batch_is_at_most_max_batch_items() -> None:
    store = Store()
    store.gate.set()
    calls = BatchedCalls(store.send, max_batch=3)
    results = await asyncio.gather(*(calls.submit(n) for n in range(7)))
    assert results == [n * 10 for n in range(7)]
    assert [len(b) for b in store.batches] == [3, 3, 1]


async def test_a_failure_reaches_its_batch_only() -> None:
    store = Store()
    calls = BatchedCalls(store.send)
    store.fail_next = True
    failed = [calls.submit(n) for n in (1, 2)]
    await asyncio.sleep(0)
    later = calls.submit(3)
    store.gate.set()
    for result in failed:
        with pytest.raises(ConnectionError):
            await result
    assert await later == 30


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    store = Store()
    calls = BatchedCalls(store.send)
    gone, kept = calls.submit(1), calls.submit(2)
    await asyncio.sleep(0)
    gone.cancel()
    store.gate.set()
    assert await kept == 20


async def test_a_wrong_number_of_results_fails_the_batch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    calls = BatchedCalls(short)
    results = await asyncio.gather(calls.submit(1), calls.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_closing_cancels_whoever_waits() -> None:
    store = Store()
    calls = BatchedCalls(store.send)
    sent, queued = calls.submit(1), None
    await asyncio.sleep(0)
    queued = calls.submit(2)
    await calls.aclose()
    assert sent.cancelled() and queued.cancelled()
