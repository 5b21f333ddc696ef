"""What usage analytics group runs by: each run counts once in every dimension, under one value.

| dimension | value |
|---|---|
| `all` | `""` |
| `deployment` | the deployment name |
| `variant` | `deployment/variant` |
| `version` | `deployment@vN` |
| `model`, `provider` | as logged on the run |
| `user` | the end user |
| `meta:<key>` | the metadata value, as text (see `run_metadata.value_text`) |
| `metakey` | the metadata key: every run carrying it, whatever its value |

A run without a variant, version, model, provider or end user counts under the value `""`
("none"), so that the values of each of those dimensions add up to `all`. Metadata is capped,
because a key like a trace id would otherwise make a row per run: keys and values longer than
META_TEXT_MAX characters are not rolled up, and each server process rolls up at most
META_KEYS_PER_HOUR keys per workspace and META_VALUES_PER_HOUR values per key in one hour.
`metakey` counts every run carrying a rolled-up key, so the runs of values past the caps are
still counted (as "other" values).
"""

from __future__ import annotations

from datetime import UTC, datetime

ALL = "all"
DEPLOYMENT = "deployment"
VARIANT = "variant"
VERSION = "version"
MODEL = "model"
PROVIDER = "provider"
USER = "user"
META_PREFIX = "meta:"
META_KEY = "metakey"

NONE = ""  # the value of a run that has none in a dimension

META_TEXT_MAX = 64
META_KEYS_PER_HOUR = 50
META_VALUES_PER_HOUR = 1000


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour a moment falls in (a naive moment is taken as UTC)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def run_values(
    deployment: str, variant: str | None, version: int | None, model: str | None, provider: str | None
) -> tuple[tuple[str, str], ...]:
    """A run's (dimension, value) pairs, but for the end user and metadata."""
    return (
        (ALL, NONE),
        (DEPLOYMENT, deployment),
        (VARIANT, NONE if variant is None else f"{deployment}/{variant}"),
        (VERSION, NONE if version is None else f"{deployment}@v{version}"),
        (MODEL, model or NONE),
        (PROVIDER, provider or NONE),
    )


def meta_dimension(key: str) -> str:
    return META_PREFIX + key


def rollable(text: str) -> bool:
    """Whether a metadata key or value is short enough to be rolled up."""
    return len(text) <= META_TEXT_MAX
