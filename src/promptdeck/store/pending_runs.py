"""The runs the run writer holds and has not written yet, found in O(1) by request id (the key),
by run id and by (workspace, external id): readers look a pending run up by each of these, on
every request that reads a run or claims an external id, while the writer holds up to a queue's
worth (50,000) of runs."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, ValuesView

from promptdeck.domain.runs import RunRecord


class PendingRuns(MutableMapping[str, RunRecord]):
    """A map from request id to run, with an index by run id and one by (workspace id, external
    id) kept in step with it. An index entry is removed only when it still points at the run
    being removed, so a second run under a key already used cannot unindex the first."""

    __slots__ = ("_by_external_id", "_by_id", "_by_request_id")

    def __init__(self) -> None:
        self._by_request_id: dict[str, RunRecord] = {}
        self._by_id: dict[str, RunRecord] = {}
        self._by_external_id: dict[tuple[str, str], RunRecord] = {}

    def __getitem__(self, request_id: str) -> RunRecord:
        return self._by_request_id[request_id]

    def __setitem__(self, request_id: str, record: RunRecord) -> None:
        replaced = self._by_request_id.get(request_id)
        if replaced is not None and replaced is not record:
            self._unindex(replaced)
        self._by_request_id[request_id] = record
        self._by_id[record.id] = record
        if record.external_id is not None:
            self._by_external_id[record.workspace_id, record.external_id] = record

    def __delitem__(self, request_id: str) -> None:
        self._unindex(self._by_request_id.pop(request_id))

    def pop(self, request_id: str, default: RunRecord | None = None) -> RunRecord | None:  # type: ignore[override]
        """As dict.pop, without MutableMapping's lookup-then-delete (the writer pops every run)."""
        record = self._by_request_id.pop(request_id, None)
        if record is None:
            return default
        self._unindex(record)
        return record

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_request_id)

    def __len__(self) -> int:
        return len(self._by_request_id)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_request_id

    def values(self) -> ValuesView[RunRecord]:
        return self._by_request_id.values()

    def by_id(self, run_id: str) -> RunRecord | None:
        return self._by_id.get(run_id)

    def by_external_id(self, workspace_id: str, external_id: str) -> RunRecord | None:
        return self._by_external_id.get((workspace_id, external_id))

    def holds(self, record: RunRecord) -> bool:
        """Whether this very run (not another under its request id) is still pending."""
        return self._by_request_id.get(record.request_id) is record

    def _unindex(self, record: RunRecord) -> None:
        if self._by_id.get(record.id) is record:
            del self._by_id[record.id]
        if record.external_id is not None:
            key = (record.workspace_id, record.external_id)
            if self._by_external_id.get(key) is record:
                del self._by_external_id[key]
