"""What watches every run as it ends: metrics, traces, the response cache's store, webhooks.

A run ends in one place (`Engine.record_run`), whether it answered, failed, was refused before
any provider call or was cut short by its caller. Each observer is called there, once, with the
finished record and the request that started it, before the record goes to the writer, so an
observer may still fill in a column (the trace id). Observers run on the event loop and must
not block: one that needs I/O hands it to its own task. One that raises is logged and skipped:
watching a run must never lose it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from promptdeck.domain.runs import RunRecord

if TYPE_CHECKING:
    from promptdeck.engine.invoke import InvokeRequest

log = logging.getLogger("promptdeck.run_observers")


class RunObserver(Protocol):
    def run_ended(self, record: RunRecord, request: InvokeRequest) -> None: ...


class RunObservers:
    """The engine's observers, called in the order they were added."""

    def __init__(self) -> None:
        self._observers: list[RunObserver] = []

    def add(self, observer: RunObserver) -> None:
        self._observers.append(observer)

    def remove(self, observer: RunObserver) -> None:
        self._observers.remove(observer)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def run_ended(self, record: RunRecord, request: InvokeRequest) -> None:
        for observer in self._observers:
            try:
                observer.run_ended(record, request)
            except Exception:
                log.exception("observer %r failed on run %s", observer, record.id)
