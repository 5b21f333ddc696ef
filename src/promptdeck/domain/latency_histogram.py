"""Latency as counts in fixed, log-spaced bins, so that percentiles over any time range and any
group are sums of stored counts (a stored percentile cannot be combined; a histogram can).

Bin 0 holds [0, 1 ms); bin k, for 1 <= k <= LAST - 1, holds [GROWTH**(k-1), GROWTH**k) ms; bin
LAST holds everything from GROWTH**(LAST-1) ms (about 17.7 minutes) up. A percentile is reported
as its bin's geometric middle, so it is within 9.5 % of the true value (sqrt(1.2) - 1) for
latencies between 1 ms and 17.7 min, and within 0.5 ms below 1 ms. Changing GROWTH or the range
would make every stored bin wrong: they are part of the stored format.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping

GROWTH = 1.2
TOP_MS = 15 * 60 * 1000.0  # the last bounded bin reaches past 15 minutes

# Upper edges of bins 0 .. LAST-1: 1, 1.2, 1.44, ... up to the first power past TOP_MS.
EDGES: tuple[float, ...] = tuple(GROWTH**k for k in range(math.ceil(math.log(TOP_MS) / math.log(GROWTH)) + 1))
LAST = len(EDGES)  # the open-ended bin


def bin_of(milliseconds: float) -> int:
    """The bin a latency falls in (negative or NaN latencies count as 0 ms)."""
    if not milliseconds > 0:
        return 0
    return bisect_right(EDGES, milliseconds)


def bin_value(index: int) -> float:
    """What a bin reports: its geometric middle (0.5 ms for bin 0, the lower edge for the last)."""
    if index <= 0:
        return 0.5
    if index >= LAST:
        return EDGES[-1]
    return math.sqrt(EDGES[index - 1] * EDGES[index])


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The latency below which `fraction` (0..1] of the counted runs fall (nearest rank), as its
    bin's value rounded to 0.01 ms; None when nothing was counted."""
    total = sum(n for n in counts.values() if n > 0)
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(counts):
        if counts[index] > 0:
            seen += counts[index]
            if seen >= rank:
                return round(bin_value(index), 2)
    return round(bin_value(max(counts)), 2)  # unreachable: seen reaches total
