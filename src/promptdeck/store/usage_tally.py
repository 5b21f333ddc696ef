"""Usage counters and latency bins, summed: a `Tally` per point and a group's `Series`.

What a rollup row holds (`USAGE_COUNTERS` and latency bins) and how rows add up, apart from
how they are read (`usage_report.py`)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from typing import Any

from promptdeck.domain.latency_histogram import LAST, bin_value
from promptdeck.store.tables import USAGE_COUNTERS

COUNTERS = len(USAGE_COUNTERS)
COUNTER_AT = {name: position for position, name in enumerate(USAGE_COUNTERS)}
FLOAT_COUNTERS = {COUNTER_AT[n] for n in ("cost", "latency_ms_sum", "ttft_ms_sum", "feedback_score_sum")}
# How each summed counter comes back as a number (a sum over no rows is NULL).
COUNTER_TYPES = tuple(float if position in FLOAT_COUNTERS else int for position in range(COUNTERS))
RUNS_AT, FEEDBACK_AT = COUNTER_AT["runs"], COUNTER_AT["feedback_count"]

Bins = dict[int, int]  # latency bin -> runs


@dataclass
class Tally:
    """Summed counters and latency bins of one bucket (or of a whole series)."""

    counters: list[float] = field(default_factory=lambda: [0] * COUNTERS)
    bins: Bins = field(default_factory=dict)

    def point(self, binned: bool) -> dict[str, Any]:
        """The answer's fields. Counts are whole numbers; means and percentiles are null when
        there is nothing to average; a difference below zero (float noise) is zero."""
        numbers = [n(v) if v > 0 else n(0) for n, v in zip(COUNTER_TYPES, self.counters, strict=True)]
        c = dict(zip(USAGE_COUNTERS, numbers, strict=True))
        runs = c["runs"]
        p50, p95, p99 = _percentiles(self.bins) if binned else (None, None, None)
        return {
            "runs": runs,
            "errors": c["errors"],
            "error_rate": c["errors"] / runs if runs else None,
            "input_tokens": c["input_tokens"],
            "cached_input_tokens": c["cached_input_tokens"],
            "output_tokens": c["output_tokens"],
            "reasoning_tokens": c["reasoning_tokens"],
            "cost": c["cost"] if c["cost"] > 1e-12 else 0.0,
            "latency_mean_ms": round(c["latency_ms_sum"] / runs, 2) if runs else None,
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
            "ttft_mean_ms": round(c["ttft_ms_sum"] / c["ttft_count"], 2) if c["ttft_count"] else None,
            "feedback_count": c["feedback_count"],
            "feedback_mean": (
                c["feedback_score_sum"] / c["feedback_scored"] if c["feedback_scored"] else None
            ),
            "thumbs_up": c["thumbs_up"],
            "thumbs_down": c["thumbs_down"],
        }


_FRACTIONS = (0.50, 0.95, 0.99)
_BIN_VALUES = [round(bin_value(index), 2) for index in range(LAST + 1)]


def _percentiles(bins: Bins) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 at once, by latency_histogram.percentile's rule (nearest rank,
    reported as the bin's value rounded to 0.01 ms): a point asks for all three."""
    counted = sorted(item for item in bins.items() if item[1] > 0)
    if not counted:
        return None, None, None
    seen = list(accumulate(count for _, count in counted))
    total = seen[-1]
    p50, p95, p99 = (
        _BIN_VALUES[counted[bisect_left(seen, max(1, math.ceil(f * total)))][0]] for f in _FRACTIONS
    )
    return p50, p95, p99


Tallies = dict[datetime, Tally]  # bucket start -> tally
EMPTY = Tally()


def _add_bins(into: Bins, bins: Bins, sign: int = 1) -> None:
    for index, count in bins.items():
        into[index] = into.get(index, 0) + sign * count


@dataclass
class Series:
    group: str | None
    tallies: Tallies
    binned: bool
    other: bool = False
    # The bins of the whole range when they were read per range only (percentiles=totals):
    # the points then have no percentiles, and the tallies no bins.
    range_bins: Bins | None = None

    def whole_bins(self) -> Bins:
        """The latency bins of the whole range (a new dict)."""
        if self.range_bins is not None:
            return dict(self.range_bins)
        summed: Bins = {}
        for tally in self.tallies.values():
            _add_bins(summed, tally.bins)
        return summed

    def minus(self, group: str | None, parts: Iterable[Series], other: bool = False) -> Series:
        """What is left of this series once the parts are taken out, bucket by bucket; with
        the bins of the range only if any side has only those."""
        parts = list(parts)
        per_range = self.range_bins is not None or any(p.range_bins is not None for p in parts)
        left = {
            moment: Tally(list(tally.counters), {} if per_range else dict(tally.bins))
            for moment, tally in self.tallies.items()
        }
        for part in parts:
            for moment, tally in part.tallies.items():
                mine = left.get(moment)
                if mine is None:
                    left[moment] = mine = Tally()
                mine.counters = [a - b for a, b in zip(mine.counters, tally.counters, strict=True)]
                if not per_range:
                    _add_bins(mine.bins, tally.bins, -1)
        range_bins = None
        if per_range:
            range_bins = self.whole_bins()
            for part in parts:
                _add_bins(range_bins, part.whole_bins(), -1)
        return Series(group, left, self.binned, other, range_bins)

    def add_bins_of(self, parts: Iterable[Series]) -> None:
        """Add the parts' latency bins to this series', bucket by bucket."""
        for part in parts:
            for moment, tally in part.tallies.items():
                mine = self.tallies.get(moment)
                if mine is None:
                    self.tallies[moment] = mine = Tally()
                _add_bins(mine.bins, tally.bins)

    @staticmethod
    def summed(group: str | None, parts: list[Series]) -> Series:
        """The parts as one series (the runs of every name that is no deployment)."""
        out = Series(group, {}, binned=parts[0].binned)
        for part in parts:
            for moment, tally in part.tallies.items():
                mine = out.tallies.setdefault(moment, Tally())
                mine.counters = [a + b for a, b in zip(mine.counters, tally.counters, strict=True)]
                _add_bins(mine.bins, tally.bins)
            if part.range_bins is not None:
                out.range_bins = out.range_bins if out.range_bins is not None else {}
                _add_bins(out.range_bins, part.range_bins)
        return out

    def add(self, later: Series) -> None:
        """Take in the series of a later, disjoint part of the range (its own buckets)."""
        self.tallies.update(later.tallies)
        if later.range_bins is not None:
            if self.range_bins is None:
                self.range_bins = {}
            _add_bins(self.range_bins, later.range_bins)

    def is_empty(self) -> bool:
        """No runs and no feedback (differences of float sums leave noise in the others)."""
        return all(t.counters[RUNS_AT] <= 0 and t.counters[FEEDBACK_AT] <= 0 for t in self.tallies.values())

    def answer(self, starts: list[datetime]) -> dict[str, Any]:
        per_point = self.binned and self.range_bins is None
        blank = EMPTY.point(per_point)  # the fields of every bucket without runs
        sums: list[float] = [0] * COUNTERS
        points = []
        for moment in starts:
            tally = self.tallies.get(moment)
            if tally is None:
                points.append({"t": moment, **blank})
                continue
            sums = [a + b for a, b in zip(sums, tally.counters, strict=True)]
            points.append({"t": moment, **tally.point(per_point)})
        return {
            "group": self.group,
            "other": self.other,
            "points": points,
            "totals": Tally(sums, self.whole_bins()).point(self.binned),
        }
