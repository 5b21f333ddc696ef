"""Usage rollups, written. A batch of runs (or of feedback) is summed in Python into one row per
(workspace, dimension, hour, value) — plus latency-bin counts and end-user totals — and added to
the stored rows with INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n, inside the caller's
transaction: the runs and their rollups are written together or not at all, and any number of
writers (replicas) writing the same hour add up. On PostgreSQL rows are upserted in key order,
so two concurrent transactions lock shared rows in the same order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from promptdeck.domain.latency_histogram import bin_of
from promptdeck.domain.runs import ERROR, RunRecord
from promptdeck.domain.usage_dimensions import (
    META_KEY,
    META_KEYS_PER_HOUR,
    META_VALUES_PER_HOUR,
    NONE,
    USER,
    hour_of,
    meta_dimension,
    rollable,
    run_values,
)
from promptdeck.store.bulk_insert import Merge, Statement, bound, execute
from promptdeck.store.tables import (
    END_USER_COUNTERS,
    USAGE_COUNTERS,
    end_users,
    usage_latency_bins,
    usage_rollups,
)

Counters = list[Any]  # in USAGE_COUNTERS order
RunCounters = list[Any]  # the first ten of USAGE_COUNTERS (runs .. ttft_count); feedback adds the rest
RowKey = tuple[str, str, datetime, str]  # workspace_id, dimension, bucket_start, value
_NO_FEEDBACK = (0, 0, 0.0, 0, 0)


def run_counters(record: RunRecord) -> RunCounters:
    """What one run adds to each of its rollup rows."""
    ttft = record.ttft_ms
    return [
        1,
        1 if record.status == ERROR else 0,
        record.input_tokens,
        record.cached_input_tokens,
        record.output_tokens,
        record.reasoning_tokens,
        record.cost or 0.0,
        record.duration_ms,
        ttft or 0.0,
        0 if ttft is None else 1,
    ]


def feedback_counters(items: Iterable[dict[str, Any]]) -> Counters:
    """What feedback items on one run add to that run's rollup rows."""
    items = list(items)
    scores = [float(i["quality"]) for i in items if i.get("quality") is not None]
    return [
        *(0,) * 6,
        0.0,
        0.0,
        0.0,
        0,
        len(items),
        len(scores),
        sum(scores),
        sum(1 for i in items if i.get("thumbs") == "up"),
        sum(1 for i in items if i.get("thumbs") == "down"),
    ]


def _add_run(into: dict[Any, RunCounters], key: Any, c: RunCounters) -> None:
    """Add run counters to a sum (unrolled: this runs several times per run written)."""
    a = into.get(key)
    if a is None:
        into[key] = c.copy()
        return
    a[0] += c[0]
    a[1] += c[1]
    a[2] += c[2]
    a[3] += c[3]
    a[4] += c[4]
    a[5] += c[5]
    a[6] += c[6]
    a[7] += c[7]
    a[8] += c[8]
    a[9] += c[9]


def _add(into: dict[Any, Counters], key: Any, counters: Counters) -> None:
    held = into.get(key)
    into[key] = list(counters) if held is None else [a + b for a, b in zip(held, counters, strict=True)]


def _count(into: dict[Any, int], key: Any, count: int = 1) -> None:
    into[key] = into.get(key, 0) + count


def _add_user(into: dict[tuple[str, str], list[Any]], key: tuple[str, str], totals: list[Any]) -> None:
    """Add an end user's first and last run and END_USER_COUNTERS to a sum."""
    held = into.get(key)
    if held is None:
        into[key] = list(totals)
        return
    held[0], held[1] = min(held[0], totals[0]), max(held[1], totals[1])
    held[2:] = [a + b for a, b in zip(held[2:], totals[2:], strict=True)]


def _admit(admitted: set[str], item: str, cap: int) -> bool:
    """Whether `item` is (or, while fewer than `cap` are, now becomes) one of `admitted`."""
    if item in admitted:
        return True
    if len(admitted) >= cap:
        return False
    admitted.add(item)
    return True


class MetadataCaps:
    """Which metadata keys and values this process rolls up in each workspace and hour: the
    first META_KEYS_PER_HOUR keys and, per key, the first META_VALUES_PER_HOUR values seen.
    Only the newest two hours are remembered."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, datetime], set[str]] = {}
        self._values: dict[tuple[str, datetime, str], set[str]] = {}
        self._newest: datetime | None = None

    def admit_key(self, workspace_id: str, hour: datetime, key: str) -> bool:
        if self._newest is None or hour > self._newest:
            self._forget_before(hour - timedelta(hours=1))
            self._newest = hour
        return _admit(self._keys.setdefault((workspace_id, hour), set()), key, META_KEYS_PER_HOUR)

    def admit_value(self, workspace_id: str, hour: datetime, key: str, value: str) -> bool:
        return _admit(self._values.setdefault((workspace_id, hour, key), set()), value, META_VALUES_PER_HOUR)

    def _forget_before(self, oldest: datetime) -> None:
        self._keys = {k: v for k, v in self._keys.items() if k[1] >= oldest}
        self._values = {k: v for k, v in self._values.items() if k[1] >= oldest}


@dataclass(frozen=True)
class RunDimensions:
    """What a run is rolled up by, for adding feedback to its rows."""

    workspace_id: str
    created_at: datetime
    deployment: str
    variant: str | None
    version_number: int | None
    model: str | None
    provider: str | None
    end_user: str | None
    metadata: tuple[tuple[str, str], ...]  # (key, value as text), as in run_metadata


class RollupBatch:
    """The sums of a batch of runs or feedback, as rows to add to the stored ones."""

    def __init__(self) -> None:
        self.usage: dict[RowKey, Counters] = {}
        self.bins: dict[tuple[str, str, datetime, str, int], int] = {}
        self.users: dict[tuple[str, str], list[Any]] = {}  # first, last, END_USER_COUNTERS

    def add_runs(
        self, records: Sequence[RunRecord], metadata: Sequence[dict[str, Any]], caps: MetadataCaps
    ) -> None:
        """Add finished runs; `metadata` is their `run_metadata` rows. The writer calls this for
        every batch, so runs are first summed by what they share, then spread over dimensions."""
        meta_of: dict[str, list[tuple[str, str]]] = {}
        for row in metadata:
            meta_of.setdefault(row["run_id"], []).append((row["key"], row["value_text"]))
        alike: dict[tuple[Any, ...], RunCounters] = {}  # runs alike but for user and metadata
        alike_bins: dict[tuple[tuple[Any, ...], int], int] = {}
        by_user: dict[RowKey, RunCounters] = {}
        seen: dict[tuple[str, str], list[datetime]] = {}  # (workspace, user) -> first, last
        tagged: dict[tuple[str, datetime, str, str], RunCounters] = {}  # (ws, hour, key, text)
        tagged_bins: dict[tuple[tuple[str, datetime, str, str], int], int] = {}
        for record in records:
            workspace_id, hour = record.workspace_id, hour_of(record.created_at)
            counters = run_counters(record)
            latency_bin = bin_of(record.duration_ms)
            signature = (
                workspace_id,
                hour,
                record.deployment,
                record.variant,
                record.version_number,
                record.model,
                record.provider,
            )
            _add_run(alike, signature, counters)
            _count(alike_bins, (signature, latency_bin))
            user = record.end_user or NONE
            _add_run(by_user, (workspace_id, USER, hour, user), counters)
            if user:
                moment, times = record.created_at, seen.get((workspace_id, user))
                if times is None:
                    seen[workspace_id, user] = [moment, moment]
                elif moment < times[0]:
                    times[0] = moment
                elif moment > times[1]:
                    times[1] = moment
            for key, text in meta_of.get(record.id, ()):
                tag = (workspace_id, hour, key, text)
                _add_run(tagged, tag, counters)
                _count(tagged_bins, (tag, latency_bin))
        for signature, counters in alike.items():
            for dimension, value in run_values(*signature[2:]):
                self._add_run_row((signature[0], dimension, signature[1], value), counters)
        for (signature, latency_bin), count in alike_bins.items():
            for dimension, value in run_values(*signature[2:]):
                _count(self.bins, (signature[0], dimension, signature[1], value, latency_bin), count)
        users = self.users
        for user_key, counters in by_user.items():
            self._add_run_row(user_key, counters)
            workspace_id, user = user_key[0], user_key[3]
            if not user:  # runs without an end user are nobody's
                continue
            first, last = seen[workspace_id, user]
            added = (counters[0], counters[1], counters[2], counters[4], counters[6])
            _add_user(users, (workspace_id, user), [first, last, *added])
        self._add_tagged(tagged, tagged_bins, caps)

    def merge(self, other: RollupBatch) -> None:
        """Add another batch's sums (the run writer sums run by run when a run fails)."""
        for row, counters in other.usage.items():
            _add(self.usage, row, counters)
        for binned, count in other.bins.items():
            _count(self.bins, binned, count)
        for user, totals in other.users.items():
            _add_user(self.users, user, totals)

    def _add_tagged(
        self,
        tagged: dict[tuple[str, datetime, str, str], RunCounters],
        tagged_bins: dict[tuple[tuple[str, datetime, str, str], int], int],
        caps: MetadataCaps,
    ) -> None:
        """Metadata sums, within the caps (values in the order they were first seen)."""
        rows_of: dict[tuple[str, datetime, str, str], list[RowKey]] = {}
        for tag, counters in tagged.items():
            workspace_id, hour, key, text = tag
            if not rollable(key) or not caps.admit_key(workspace_id, hour, key):
                continue
            rows = rows_of[tag] = [(workspace_id, META_KEY, hour, key)]
            if rollable(text) and caps.admit_value(workspace_id, hour, key, text):
                rows.append((workspace_id, meta_dimension(key), hour, text))
            for row in rows:
                self._add_run_row(row, counters)
        for (tag, latency_bin), count in tagged_bins.items():
            for row in rows_of.get(tag, ()):
                _count(self.bins, (*row, latency_bin), count)

    def _add_run_row(self, key: RowKey, counters: RunCounters) -> None:
        held = self.usage.get(key)
        if held is None:
            self.usage[key] = [*counters, *_NO_FEEDBACK]
        else:
            _add_run(self.usage, key, counters)  # the run counters come first

    def add_feedback(self, run: RunDimensions, counters: Counters) -> None:
        """Add feedback to the rows of the run it is about (the hour the run started). The
        metadata caps are those of the writer that wrote the run, unknown here: feedback on a
        run whose value was past a cap makes a row with feedback and no runs."""
        hour = hour_of(run.created_at)
        keys = [
            (run.workspace_id, dimension, hour, value)
            for dimension, value in run_values(
                run.deployment, run.variant, run.version_number, run.model, run.provider
            )
        ]
        keys.append((run.workspace_id, USER, hour, run.end_user or NONE))
        for name, text in run.metadata:
            if rollable(name):
                keys.append((run.workspace_id, META_KEY, hour, name))
                if rollable(text):
                    keys.append((run.workspace_id, meta_dimension(name), hour, text))
        for key in keys:
            _add(self.usage, key, counters)

    def usage_rows(self, ordered: bool = True) -> list[tuple[Any, ...]]:
        """Rows of usage_rollups, in its column order (and in key order if `ordered`)."""
        return [(*key, *counters) for key, counters in _items(self.usage, ordered)]

    def bin_rows(self, ordered: bool = True) -> list[tuple[Any, ...]]:
        return [(*key, count) for key, count in _items(self.bins, ordered)]

    def user_rows(self, ordered: bool = True) -> list[tuple[Any, ...]]:
        return [(*key, *totals) for key, totals in _items(self.users, ordered)]


def _items(sums: dict[Any, Any], ordered: bool) -> Iterable[tuple[Any, Any]]:
    return sorted(sums.items()) if ordered else sums.items()


_SUMMED = Merge(USAGE_COUNTERS)
_BINS_SUMMED = Merge(("runs",))
_USERS_MERGED = Merge(END_USER_COUNTERS, earliest=("first_seen",), latest=("last_seen",))


def rollup_statements(dialect: Dialect, batch: RollupBatch) -> list[Statement]:
    """The statements adding a batch's sums to the stored rows. On PostgreSQL rows go in key
    order (above); SQLite lets one transaction write at a time: there, rows need no order."""
    ordered = dialect.name != "sqlite"
    return [
        *bound(dialect, usage_rollups, batch.usage_rows(ordered), _SUMMED),
        *bound(dialect, usage_latency_bins, batch.bin_rows(ordered), _BINS_SUMMED),
        *bound(dialect, end_users, batch.user_rows(ordered), _USERS_MERGED),
    ]


async def write_rollups(conn: AsyncConnection, batch: RollupBatch) -> None:
    """Add a batch's sums to the stored rows, in the connection's transaction."""
    await execute(conn, rollup_statements(conn.dialect, batch))
