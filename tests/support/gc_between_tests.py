"""The test process's full garbage collections, run between tests rather than whenever Python
decides: measured over the whole suite, the automatic ones paused the process 66 times, for
136 s in all and up to 13.4 s at once, and a pause freezes every in-process server mid-test
(their threads share the process), so timing-bound tests failed at random (a 1 s upstream limit
took 4.2 s; a `GET /metrics` timed out at 5 s). Young collections still run as usual; a full
one runs after every `EVERY` tests, with no test running. A full collection's cost is mostly
the live objects it walks (~4 s each late in the suite, whatever it frees): after every 40
tests, 77 of them took 295 s and the suite 1,339 s against 1,176; every 80 tests makes about
as many as Python made on its own."""

from __future__ import annotations

import gc

import pytest

EVERY = 80
_finished = 0


def pytest_configure(config: pytest.Config) -> None:
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000_000)  # no automatic full collection


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    global _finished
    _finished += 1
    if _finished % EVERY == 0:
        gc.collect()
