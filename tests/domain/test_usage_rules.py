"""The pure rules of usage analytics: latency bins and percentiles (with their error bound),
and the time ranges of `GET /api/usage`."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.latency_histogram import EDGES, LAST, bin_of, bin_value, percentile
from promptdeck.domain.usage_query import parse_usage_query

NOW = datetime(2026, 3, 2, 10, 17, 3, tzinfo=UTC)


def test_bins_edges() -> None:
    assert (bin_of(-5.0), bin_of(0.0), bin_of(0.99), bin_of(float("nan"))) == (0, 0, 0, 0)
    assert (bin_of(1.0), bin_of(1.19), bin_of(1.2), bin_of(1.44)) == (1, 1, 2, 3)
    assert EDGES[-1] > 15 * 60 * 1000 > EDGES[-2] and LAST == len(EDGES) == 77
    assert bin_of(EDGES[-1]) == bin_of(1e12) == LAST
    assert bin_value(0) == 0.5 and bin_value(LAST) == EDGES[-1]


@given(st.floats(min_value=1.0, max_value=EDGES[-1], exclude_max=True))
def test_a_bin_reports_within_the_documented_bound(milliseconds: float) -> None:
    assert abs(bin_value(bin_of(milliseconds)) - milliseconds) / milliseconds <= math.sqrt(1.2) - 1 + 1e-12


def test_percentiles_by_nearest_rank() -> None:
    counts = {bin_of(10.0): 50, bin_of(100.0): 45, bin_of(1000.0): 5}
    assert percentile(counts, 0.5) == round(bin_value(bin_of(10.0)), 2)
    assert percentile(counts, 0.51) == percentile(counts, 0.95) == round(bin_value(bin_of(100.0)), 2)
    assert percentile(counts, 0.96) == percentile(counts, 1.0) == round(bin_value(bin_of(1000.0)), 2)
    assert percentile({}, 0.5) is None and percentile({3: 0}, 0.5) is None
    assert percentile({bin_of(7.0): 1}, 0.01) == round(bin_value(bin_of(7.0)), 2)


def parse(**given: str | None) -> tuple[datetime, datetime]:
    values: dict[str, str | None] = {"start": None, "end": None, "group_by": None, "deployment": None}
    values.update(given)
    bucket = values.pop("bucket", None) or "hour"
    query = parse_usage_query(**values, bucket=bucket, limit=None, now=NOW)  # type: ignore[arg-type]
    return query.start, query.end


def test_ranges_default_and_round_to_whole_buckets() -> None:
    hour = datetime(2026, 3, 2, 10, tzinfo=UTC)
    day = datetime(2026, 3, 2, tzinfo=UTC)
    assert parse() == (hour - timedelta(hours=23), hour + timedelta(hours=1))
    assert parse(bucket="day") == (day - timedelta(days=29), day + timedelta(days=1))
    assert parse(start="2026-03-02T08:30:00+02:00") == (hour - timedelta(hours=4), hour + timedelta(hours=1))
    assert parse(end="2026-03-01T00:00:00Z") == (day - timedelta(days=2), day - timedelta(days=1))
    assert parse(bucket="day", start="2026-02-01T23:59:59", end="2026-02-03T00:00:01") == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 2, 4, tzinfo=UTC),
    )
    assert len(parse_usage_query(**dict.fromkeys(("start", "end", "group_by", "deployment", "limit")),
                                 bucket="day", now=NOW).bucket_starts()) == 30  # fmt: skip


def test_the_points_cap() -> None:
    assert parse(start="2026-01-01T00:00:00Z", end="2026-03-25T08:00:00Z")  # exactly 2000 hours
    with pytest.raises(ValidationFailed, match="at most 2000 hours"):
        parse(start="2026-01-01T00:00:00Z", end="2026-03-25T08:00:01Z")
