"""What `GET /api/usage` can ask for: a time range cut into hour or day buckets (UTC), an
optional grouping and deployment, how many groups to show and whether the groups' latency
percentiles are wanted per point or only over the range. Parsed from query parameters here,
checked all at once; every problem names its parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.run_filters import parse_time_params
from promptdeck.domain.usage_dimensions import (
    DEPLOYMENT,
    META_TEXT_MAX,
    MODEL,
    PROVIDER,
    USER,
    VARIANT,
    VERSION,
    meta_dimension,
)

Bucket = Literal["hour", "day"]
Percentiles = Literal["points", "totals"]
PERCENTILES: tuple[Percentiles, ...] = ("points", "totals")
BUCKET_SIZES: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
DEFAULT_SPANS: dict[str, timedelta] = {"hour": timedelta(hours=24), "day": timedelta(days=30)}
MAX_POINTS = 2000  # buckets in one answer
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
META_GROUP = "metadata."
GROUP_BYS: dict[str, str] = {  # group_by -> the dimension it reads
    "deployment": DEPLOYMENT,
    "variant": VARIANT,
    "version": VERSION,
    "model": MODEL,
    "provider": PROVIDER,
    "user": USER,
}
DEPLOYMENT_FILTERABLE = (None, "deployment", "variant", "version")  # group_bys `deployment=` narrows


@dataclass(frozen=True)
class UsageQuery:
    bucket: Bucket
    start: datetime  # inclusive, at a bucket start
    end: datetime  # exclusive, at a bucket start
    group_by: str | None = None  # as asked: "model", "metadata.env"
    deployment: str | None = None
    limit: int = DEFAULT_LIMIT
    # "totals": the groups' percentiles over the range only (their bins are not read per bucket)
    percentiles: Percentiles = "points"

    @property
    def dimension(self) -> str | None:
        """The stored dimension the groups are values of."""
        if self.group_by is None:
            return None
        if self.group_by.startswith(META_GROUP):
            return meta_dimension(self.group_by.removeprefix(META_GROUP))
        return GROUP_BYS[self.group_by]

    @property
    def metadata_key(self) -> str | None:
        if self.group_by is None or not self.group_by.startswith(META_GROUP):
            return None
        return self.group_by.removeprefix(META_GROUP)

    def bucket_starts(self) -> list[datetime]:
        size, moment, starts = BUCKET_SIZES[self.bucket], self.start, []
        while moment < self.end:
            starts.append(moment)
            moment += size
        return starts


def floor_to(moment: datetime, bucket: str) -> datetime:
    """The start of the UTC hour or day a moment falls in."""
    moment = moment.astimezone(UTC)
    floored = moment.replace(minute=0, second=0, microsecond=0)
    return floored.replace(hour=0) if bucket == "day" else floored


def ceil_to(moment: datetime, bucket: str) -> datetime:
    floored = floor_to(moment, bucket)
    return floored if floored == moment else floored + BUCKET_SIZES[bucket]


def parse_usage_query(
    *,
    start: str | None,
    end: str | None,
    bucket: str,
    group_by: str | None,
    deployment: str | None,
    limit: str | None,
    now: datetime,
    percentiles: str | None = None,
) -> UsageQuery:
    """`from` is floored and `to` rounded up to whole buckets. Without them: the last 24 hours
    (hour buckets) or 30 days (day buckets), up to the end of the current bucket."""
    problems: list[str] = []
    if bucket not in BUCKET_SIZES:
        problems.append(f"bucket: expected hour or day; got {bucket!r}")
        bucket = "hour"
    times = parse_time_params({"from": start, "to": end}, problems)
    if group_by is not None:
        key = group_by.removeprefix(META_GROUP) if group_by.startswith(META_GROUP) else None
        if key is None and group_by not in GROUP_BYS:
            problems.append(
                f"group_by: expected one of {', '.join(GROUP_BYS)} or metadata.<key>; got {group_by!r}"
            )
        elif key is not None and not key:
            problems.append("group_by: metadata. needs a key, e.g. metadata.customer")
        elif key is not None and len(key) > META_TEXT_MAX:
            problems.append(
                f"group_by: metadata keys longer than {META_TEXT_MAX} characters are not rolled up"
            )
    if deployment is not None and group_by not in DEPLOYMENT_FILTERABLE:
        problems.append(
            f"deployment: narrows the answer without group_by or with group_by=deployment, variant "
            f"or version, not with group_by={group_by}"
        )
    count = DEFAULT_LIMIT
    if limit is not None:
        try:
            count = int(limit)
            if not 1 <= count <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            problems.append(f"limit: expected a whole number from 1 to {MAX_LIMIT}; got {limit!r}")
    if percentiles is not None and percentiles not in PERCENTILES:
        problems.append(f"percentiles: expected {' or '.join(PERCENTILES)}; got {percentiles!r}")
    try:
        first, last = _range(bucket, times["from"], times["to"], now)
    except OverflowError:  # e.g. to=9999-12-31T23:59:59 rounded up to the next day
        first = last = now
        problems.append(
            f"from, to: rounded to whole {bucket}s (and without from, the default span before to), "
            "the range must lie within the years 1 to 9999 in UTC; choose times inside them"
        )
    else:
        if last <= first:
            problems.append("from: must be before to")
        elif (last - first) / BUCKET_SIZES[bucket] > MAX_POINTS:
            problems.append(
                f"from, to: at most {MAX_POINTS} {bucket}s in one answer; narrow the range"
                + (" or use bucket=day" if bucket == "hour" else "")
            )
    if problems:
        raise ValidationFailed("invalid usage query: " + "; ".join(problems), details=problems)
    return UsageQuery(
        bucket,  # type: ignore[arg-type]
        first,
        last,
        group_by,
        deployment,
        count,
        percentiles or "points",  # type: ignore[arg-type]
    )


def _range(
    bucket: str, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """Raises OverflowError when the rounding or the default span leaves the calendar."""
    # without `to`: up to the end of the current bucket
    last = floor_to(now, bucket) + BUCKET_SIZES[bucket] if end is None else ceil_to(end, bucket)
    first = floor_to(start, bucket) if start is not None else last - DEFAULT_SPANS[bucket]
    return first, last
