"""How the benchmarks state figures: percentiles, table cells, changes against a baseline."""

from __future__ import annotations

from typing import Any

NS_PER_MS = 1_000_000


def percentile(sorted_ns: list[int], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_ns:
        return None
    rank = max(0, min(len(sorted_ns) - 1, round(q / 100 * len(sorted_ns) + 0.5) - 1))
    return round(sorted_ns[rank] / NS_PER_MS, 3)


def fmt(value: Any, sign: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}"
        return ("+" if sign and value >= 0 else "") + text
    return str(value)


def change_cell(old: float, new: float, better: str, min_delta: float = 0.0) -> str:
    """A comparison table's change from the baseline, `+12.3%`, flagged ` (worse)` when it went
    the wrong way (`better` is "lower" or "higher") by 10 % or more and by `min_delta` or more.
    Shared by the benchmarks' comparisons."""
    change = (new - old) / old * 100 if old else 0.0
    worse = change > 0 if better == "lower" else change < 0
    flag = " (worse)" if worse and abs(change) >= 10 and abs(new - old) >= min_delta else ""
    return f"{change:+.1f}%{flag}"
