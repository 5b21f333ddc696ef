"""How a variant copes with a failing upstream: time limits, retries and a fallback chain.

Stored per variant as JSON:

    {"timeouts": {"connect": 5, "first_byte": 30, "total": 120},
     "retries": {"max_attempts": 3, "backoff_seconds": 0.5, "max_backoff_seconds": 8},
     "fallbacks": [{"model": "anthropic/claude-haiku-4-5"}, {"model": "openai/gpt-4o-mini", "version": 3}]}

Every field is optional. A fallback may name a version of the same prompt whose
messages are tuned for that model; without one it reuses the variant's version.

Two more keys live in the same JSON (see docs/lifecycle.md):

    {"split": [{"version": 2, "weight": 90}, {"version": 3, "weight": 10}],
     "follows_latest": true}

`split` serves several versions of the prompt by weight (server-side A/B);
`follows_latest` is set by the catalog when the variant was pointed at `latest`
and is not set through the config endpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from promptdeck.domain.errors import ValidationFailed

DEFAULT_MAX_ATTEMPTS = 2  # one retry of a retryable failure, unless the variant says otherwise
KNOWN_KEYS = ("timeouts", "retries", "fallbacks", "split", "follows_latest")


@dataclass(frozen=True, slots=True)
class Fallback:
    model: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class SplitArm:
    version: int
    weight: float


@dataclass(frozen=True, slots=True)
class VariantConfig:
    connect_timeout: float | None = None
    first_byte_timeout: float | None = None
    total_timeout: float | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    fallbacks: tuple[Fallback, ...] = ()
    split: tuple[SplitArm, ...] = ()
    follows_latest: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data; `split` and `follows_latest` appear only when set."""
        timeouts = {
            name: value
            for name, value in (
                ("connect", self.connect_timeout),
                ("first_byte", self.first_byte_timeout),
                ("total", self.total_timeout),
            )
            if value is not None
        }
        data: dict[str, Any] = {
            "timeouts": timeouts,
            "retries": {
                "max_attempts": self.max_attempts,
                "backoff_seconds": self.backoff_seconds,
                "max_backoff_seconds": self.max_backoff_seconds,
            },
            "fallbacks": [
                {"model": f.model, **({"version": f.version} if f.version is not None else {})}
                for f in self.fallbacks
            ],
        }
        if self.split:
            data["split"] = [{"version": a.version, "weight": a.weight} for a in self.split]
        if self.follows_latest:
            data["follows_latest"] = True
        return data


def parse_variant_config(raw: Any) -> VariantConfig:
    """Check a variant's reliability settings, reporting every problem at once."""
    if raw is None:
        return VariantConfig()
    if not isinstance(raw, dict):
        raise ValidationFailed("a variant config is an object with timeouts, retries and fallbacks")
    problems: list[str] = [f"{key}: unknown field" for key in raw if key not in KNOWN_KEYS]
    timeouts = _section(raw, "timeouts", ("connect", "first_byte", "total"), problems)
    retries = _section(raw, "retries", ("max_attempts", "backoff_seconds", "max_backoff_seconds"), problems)
    for name, value in timeouts.items():
        if not _positive(value):
            problems.append(f"timeouts.{name}: expected a number of seconds above 0")
    attempts = retries.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        problems.append("retries.max_attempts: expected a whole number from 1 to 10")
    for name in ("backoff_seconds", "max_backoff_seconds"):
        if name in retries and (not _positive(retries[name]) or retries[name] > 300):
            problems.append(f"retries.{name}: expected seconds above 0 and at most 300")
    fallbacks: list[Fallback] = []
    raw_fallbacks = raw.get("fallbacks") or []
    if not isinstance(raw_fallbacks, list):
        problems.append("fallbacks: expected a list of {model, version?}")
        raw_fallbacks = []
    for i, item in enumerate(raw_fallbacks):
        model = item.get("model") if isinstance(item, dict) else None
        version = item.get("version") if isinstance(item, dict) else None
        if not isinstance(model, str) or "/" not in model.strip("/"):
            problems.append(f"fallbacks[{i}].model: expected 'provider/model'")
        elif version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            problems.append(f"fallbacks[{i}].version: expected a version number")
        else:
            fallbacks.append(Fallback(model, version))
    split = _split(raw.get("split"), problems)
    follows_latest = raw.get("follows_latest", False)
    if not isinstance(follows_latest, bool):
        problems.append("follows_latest: expected true or false")
    if problems:
        raise ValidationFailed("invalid variant config: " + "; ".join(problems), details=problems)
    return VariantConfig(
        connect_timeout=timeouts.get("connect"),
        first_byte_timeout=timeouts.get("first_byte"),
        total_timeout=timeouts.get("total"),
        max_attempts=attempts,
        backoff_seconds=float(retries.get("backoff_seconds", 0.5)),
        max_backoff_seconds=float(retries.get("max_backoff_seconds", 8.0)),
        fallbacks=tuple(fallbacks),
        split=split,
        follows_latest=bool(follows_latest),
    )


def _split(raw: Any, problems: list[str]) -> tuple[SplitArm, ...]:
    """Weighted versions: whole version numbers, each once, weights >= 0 summing above 0."""
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        problems.append("split: expected a list of {version, weight}")
        return ()
    arms: list[SplitArm] = []
    before = len(problems)
    for i, item in enumerate(raw):
        version = item.get("version") if isinstance(item, dict) else None
        weight = item.get("weight") if isinstance(item, dict) else None
        if isinstance(item, dict) and set(item) - {"version", "weight"}:
            problems.append(f"split[{i}]: unknown field (known: version, weight)")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            problems.append(f"split[{i}].version: expected a version number")
        elif any(a.version == version for a in arms):
            problems.append(f"split[{i}].version: version {version} is listed twice")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < math.inf:
            problems.append(f"split[{i}].weight: expected a number of 0 or more")
        elif isinstance(version, int) and not isinstance(version, bool):
            arms.append(SplitArm(version, float(weight)))
    if len(problems) == before and sum(a.weight for a in arms) <= 0:
        problems.append("split: the weights must add up to more than 0")
    return tuple(arms)


def _section(raw: dict[str, Any], name: str, known: tuple[str, ...], problems: list[str]) -> dict[str, Any]:
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        problems.append(f"{name}: expected an object")
        return {}
    problems.extend(
        f"{name}.{key}: unknown field (known: {', '.join(known)})" for key in section if key not in known
    )
    return {k: v for k, v in section.items() if k in known}


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
