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

And one opts the variant into the response cache (docs/operations.md, "Response cache"):

    {"cache": {"ttl_seconds": 3600, "when_temperature_above_zero": false}}

And the release gates a version must pass before the variant serves it (domain/gates.py):

    {"gates": [{"name": "quality", "dataset": "golden", "min_pass_rate": 0.9, "no_regressions": true}]}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WrapValidator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.gates import Gate, distinct_names
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.domain.schema_problems import lines

MAX_CACHE_TTL = 30 * 24 * 3600  # seconds a cached answer may be kept
DEFAULT_MAX_ATTEMPTS = 2  # one retry of a retryable failure, unless the variant says otherwise
FROZEN = ConfigDict(frozen=True, extra="forbid")
FORBID = ConfigDict(extra="forbid")  # pydantic dataclasses take `frozen` from the decorator


def expected(message: str) -> WrapValidator:
    """Replace pydantic's own complaint about a value with what the field expects."""

    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if any(e["type"] == "extra_forbidden" or e["loc"] for e in exc.errors()):
                raise  # a problem inside the value (an unknown field of an object): reported as is
            raise PydanticCustomError("invalid_value", "expected " + message) from None

    return WrapValidator(validate)


def _none_as(default: Any) -> BeforeValidator:
    """A section given as null is the section left out."""
    return BeforeValidator(lambda value: default if value is None else value)


Seconds = Annotated[
    float, Field(gt=0, allow_inf_nan=False, strict=True), expected("a number of seconds above 0")
]
Backoff = Annotated[
    float,
    Field(gt=0, le=300, allow_inf_nan=False, strict=True),
    expected("seconds above 0 and at most 300"),
]
Attempts = Annotated[int, Field(ge=1, le=10, strict=True), expected("a whole number from 1 to 10")]
# A version number as the database can hold it: a larger one is refused here, not by the database.
VersionNumber = Annotated[int, Field(ge=1, le=VERSION_NUMBER_MAX, strict=True), expected("a version number")]


def _model_name(value: str) -> str:
    if "/" not in value.strip("/"):
        raise PydanticCustomError("model_name", "expected 'provider/model'")
    return value


ModelName = Annotated[str, Field(strict=True), expected("'provider/model'"), AfterValidator(_model_name)]


@dataclass(frozen=True, config=FORBID)
class Fallback:
    """Another model to try; `version` names a version of the same prompt tuned for it."""

    model: ModelName
    version: VersionNumber | None = None


@dataclass(frozen=True, config=FORBID)
class SplitArm:
    version: VersionNumber
    weight: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True), expected("a number of 0 or more")]


class Timeouts(BaseModel):
    model_config = FROZEN

    connect: Seconds | None = None
    first_byte: Seconds | None = None
    total: Seconds | None = None


class Retries(BaseModel):
    model_config = FROZEN

    max_attempts: Attempts = DEFAULT_MAX_ATTEMPTS
    backoff_seconds: Backoff = 0.5
    max_backoff_seconds: Backoff = 8.0


class ResponseCaching(BaseModel):
    """The variant's answers may be served again, without a provider call, for `ttl_seconds`.
    A call whose temperature is above 0 (or unset: the providers' default is 1) varies by
    design, so it is cached only when `when_temperature_above_zero` says so."""

    model_config = FROZEN

    ttl_seconds: Annotated[
        float,
        Field(gt=0, le=MAX_CACHE_TTL, allow_inf_nan=False, strict=True),
        expected("seconds above 0 and at most 2592000 (30 days)"),
    ] = 3600.0
    when_temperature_above_zero: Annotated[bool, Field(strict=True), expected("true or false")] = False


def _distinct_and_weighted(arms: tuple[SplitArm, ...]) -> tuple[SplitArm, ...]:
    """Each version once, and weights adding up to more than 0."""
    seen: set[int] = set()
    for arm in arms:
        if arm.version in seen:
            raise PydanticCustomError(
                "split_twice", "version {version} is listed twice", {"version": arm.version}
            )
        seen.add(arm.version)
    if arms and sum(arm.weight for arm in arms) <= 0:
        raise PydanticCustomError("split_weights", "the weights must add up to more than 0")
    return arms


class VariantConfig(BaseModel):
    """A variant's time limits, retries, fallback chain and traffic split; every field optional.
    The engine reads the flat attributes below (`max_attempts`, `first_byte_timeout`, ...)."""

    model_config = FROZEN

    timeouts: Annotated[Timeouts, _none_as({}), expected("an object")] = Timeouts()
    retries: Annotated[Retries, _none_as({}), expected("an object")] = Retries()
    fallbacks: Annotated[
        tuple[Annotated[Fallback, expected("{model, version?}")], ...],
        _none_as(()),
        expected("a list of {model, version?}"),
        Field(description="models to try in turn when the variant's own model fails"),
    ] = ()
    split: Annotated[
        tuple[Annotated[SplitArm, expected("{version, weight}")], ...],
        _none_as(()),
        expected("a list of {version, weight}"),
        AfterValidator(_distinct_and_weighted),
        Field(description="versions of the prompt served by weight (server-side A/B)"),
    ] = ()
    follows_latest: Annotated[
        bool,
        Field(strict=True, description="set by the catalog when the variant points at `latest`"),
        expected("true or false"),
    ] = False
    cache: Annotated[
        ResponseCaching | None,
        expected("an object {ttl_seconds?, when_temperature_above_zero?}"),
        Field(description="serve identical calls from the response cache; null: never"),
    ] = None
    gates: Annotated[
        tuple[Annotated[Gate, expected("{name, dataset, min_pass_rate?, no_regressions?}")], ...],
        _none_as(()),
        expected("a list of {name, dataset, min_pass_rate?, no_regressions?}"),
        AfterValidator(distinct_names),
        Field(description="evaluations a version must pass before the variant serves it"),
    ] = ()

    @property
    def connect_timeout(self) -> float | None:
        return self.timeouts.connect

    @property
    def first_byte_timeout(self) -> float | None:
        return self.timeouts.first_byte

    @property
    def total_timeout(self) -> float | None:
        return self.timeouts.total

    @property
    def max_attempts(self) -> int:
        return self.retries.max_attempts

    @property
    def backoff_seconds(self) -> float:
        return self.retries.backoff_seconds

    @property
    def max_backoff_seconds(self) -> float:
        return self.retries.max_backoff_seconds

    def to_dict(self) -> dict[str, Any]:
        """Plain data; `split`, `follows_latest`, `cache` and `gates` appear only when set."""
        data: dict[str, Any] = {
            "timeouts": self.timeouts.model_dump(exclude_none=True),
            "retries": self.retries.model_dump(),
            "fallbacks": [
                {"model": f.model, **({"version": f.version} if f.version is not None else {})}
                for f in self.fallbacks
            ],
        }
        if self.split:
            data["split"] = [{"version": a.version, "weight": a.weight} for a in self.split]
        if self.follows_latest:
            data["follows_latest"] = True
        if self.cache is not None:
            data["cache"] = self.cache.model_dump()
        if self.gates:
            data["gates"] = [gate.to_dict() for gate in self.gates]
        return data


DEFAULT_CONFIG = VariantConfig()
"""The config of a variant that has none: built once, since building a model costs ~5 µs."""


def parse_variant_config(raw: Any) -> VariantConfig:
    """Check a variant's reliability settings (stored JSON, an archive's), reporting every
    problem at once; a config already checked is returned as it is."""
    if raw is None:
        return DEFAULT_CONFIG
    if isinstance(raw, VariantConfig):
        return raw
    if not isinstance(raw, dict):
        raise ValidationFailed("a variant config is an object with timeouts, retries and fallbacks")
    try:
        return VariantConfig.model_validate(raw)
    except ValidationError as exc:
        found = lines(exc.errors())
        raise ValidationFailed("invalid variant config: " + "; ".join(found), details=found) from None
