"""Evaluators: how a dataset judges each case's output (docs/evaluations.md, "Evaluators").

An `EvaluatorSpec` is the stored description of one evaluator (a dataset keeps them as plain
dicts); `score` judges one case's outcome with a built-in one, purely. Every evaluator gives a
score in [0, 1] that passes at or above its threshold; one that cannot judge (no expected output
to compare with, a failed call, an evaluator that raised) gives an errored `Score` instead of
raising, so a bad evaluator marks a case and never stops an evaluation. The LLM judge is a call,
so `engine/case_scoring.py` runs it; what it sends and how its answer is read live here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score

if TYPE_CHECKING:
    from jsonpath_ng.jsonpath import JSONPath

EvaluatorType = Literal[
    "exact_match",
    "contains",
    "not_contains",
    "regex",
    "valid_json",
    "json_schema",
    "json_path",
    "number_within",
    "length",
    "similarity",
    "latency_below",
    "cost_below",
    "llm_judge",
]
LLM_JUDGE = "llm_judge"
SIMILARITY_METHODS = ("ratio", "partial_ratio", "token_sort_ratio", "token_set_ratio")
NAME_MAX = 100
SHOWN_MAX = 40  # how much of a value a default name quotes

# The parameters each type takes (as written in a spec), beside `type`, `name` and `threshold`.
PARAMS: dict[str, frozenset[str]] = {
    "exact_match": frozenset({"value", "case_sensitive", "ignore_whitespace"}),
    "contains": frozenset({"value", "case_sensitive", "ignore_whitespace"}),
    "not_contains": frozenset({"value", "case_sensitive", "ignore_whitespace"}),
    "regex": frozenset({"pattern", "case_sensitive"}),
    "valid_json": frozenset(),
    "json_schema": frozenset({"schema"}),
    "json_path": frozenset({"path", "value"}),
    "number_within": frozenset({"value", "tolerance"}),
    "length": frozenset({"min_length", "max_length"}),
    "similarity": frozenset({"value", "method", "case_sensitive"}),
    "latency_below": frozenset({"max_ms"}),
    "cost_below": frozenset({"max_usd"}),
    "llm_judge": frozenset({"deployment", "rubric", "variant"}),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "regex": ("pattern",),
    "json_schema": ("schema",),
    "json_path": ("path",),
    "latency_below": ("max_ms",),
    "cost_below": ("max_usd",),
    "llm_judge": ("deployment", "rubric"),
}
DEFAULT_THRESHOLDS = {"similarity": 0.8, "llm_judge": 0.7}  # every other type: 1.0


class EvaluatorSpec(BaseModel):
    """One evaluator as a dataset stores it: `type`, the parameters that type takes, a `name`
    (unique in its dataset; made from the type and parameters when not given) and a
    `threshold` (passes when score >= threshold). Store it with `as_data()`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    type: EvaluatorType
    name: str = Field("", max_length=NAME_MAX)
    threshold: float = Field(1.0, ge=0.0, le=1.0)
    # Compared with the output; when absent, the case's expected output is.
    value: Any = None
    case_sensitive: bool = True
    ignore_whitespace: bool = False  # ends trimmed, each run of whitespace counts as one space
    pattern: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    path: str | None = None
    tolerance: float = Field(0.0, ge=0.0)
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=0)
    method: Literal["ratio", "partial_ratio", "token_sort_ratio", "token_set_ratio"] = "ratio"
    max_ms: float | None = Field(None, gt=0)
    max_usd: float | None = Field(None, ge=0)
    deployment: str | None = Field(None, min_length=1)
    rubric: str | None = Field(None, min_length=1)
    variant: str | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _default_threshold(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("threshold") is None and "type" in data:
            return {**data, "threshold": DEFAULT_THRESHOLDS.get(str(data["type"]), 1.0)}
        return data

    @model_validator(mode="after")
    def _check(self) -> EvaluatorSpec:
        given = {_written(field) for field in self.model_fields_set} - {"type", "name", "threshold"}
        if stray := sorted(given - PARAMS[self.type]):
            takes = ", ".join(sorted(PARAMS[self.type])) or "no parameters"
            raise ValueError(f"{self.type} takes {takes}; not {', '.join(stray)}")
        if missing := [param for param in REQUIRED.get(self.type, ()) if param not in given]:
            raise ValueError(f"{self.type} needs {' and '.join(missing)}")
        _check_params(self)
        if not self.name:
            self.name = default_name(self)[:NAME_MAX]
        return self

    def as_data(self) -> dict[str, Any]:
        """The plain dict a dataset stores: what `model_validate` reads back to an equal spec."""
        return self.model_dump(mode="json", exclude_defaults=True) | {
            "type": self.type,
            "name": self.name,
            "threshold": self.threshold,
        }


def _written(field: str) -> str:
    return "schema" if field == "schema_" else field


def _check_params(spec: EvaluatorSpec) -> None:
    """Whatever the fields' own types cannot say, in words a person can act on."""
    value, kind = spec.value, spec.type
    if kind in ("exact_match", "similarity") and value is not None and not isinstance(value, str):
        raise ValueError(f"{kind}: value must be text")
    if kind in ("contains", "not_contains") and value is not None and not _texts(value):
        raise ValueError(f"{kind}: value must be text or a non-empty list of texts")
    if kind == "number_within" and value is not None and not _is_number(value):
        raise ValueError("number_within: value must be a number")
    if kind == "regex":
        try:
            re.compile(spec.pattern or "")
        except re.error as exc:
            raise ValueError(
                f"regex: pattern {spec.pattern!r} is not a valid regular expression: {exc}"
            ) from None
    if kind == "json_schema":
        try:
            validator_for(spec.schema_).check_schema(spec.schema_)
        except SchemaError as exc:
            raise ValueError(f"json_schema: schema is not a valid JSON Schema: {exc.message}") from None
    if kind == "json_path":
        try:
            _json_path(spec.path or "")
        except Exception as exc:  # the parser raises more than its own JSONPathError
            raise ValueError(f"json_path: path {spec.path!r} is not a valid JSON path: {exc}") from None
    if kind == "length":
        low, high = spec.min_length, spec.max_length
        if low is None and high is None:
            raise ValueError("length needs min_length, max_length or both")
        if low is not None and high is not None and low > high:
            raise ValueError(f"length: min_length ({low}) is more than max_length ({high})")


def _texts(value: Any) -> list[str] | None:
    """`value` as a list of texts, or None when it is neither a text nor a non-empty list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"
    return json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text


def default_name(spec: EvaluatorSpec) -> str:
    """A readable name from the type and parameters, e.g. `contains "refund"`."""
    values = (
        "expected"
        if spec.value is None
        else ", ".join(_shown(item) for item in _texts(spec.value) or [spec.value])
    )
    names: dict[str, Callable[[], str]] = {
        "exact_match": lambda: f"exact match {values}",
        "contains": lambda: f"contains {values}",
        "not_contains": lambda: f"does not contain {values}",
        "regex": lambda: f"matches /{spec.pattern}/",
        "valid_json": lambda: "valid JSON",
        "json_schema": lambda: "matches JSON schema",
        "json_path": lambda: f"{spec.path} == {values}",
        "number_within": lambda: f"number within ±{spec.tolerance:g} of {values}",
        "length": lambda: (
            f"length {spec.min_length or 0}..{'' if spec.max_length is None else spec.max_length}"
        ),
        "similarity": lambda: f"similar to {values}",
        "latency_below": lambda: f"latency ≤ {spec.max_ms:g} ms",
        "cost_below": lambda: f"cost ≤ ${spec.max_usd:g}",
        "llm_judge": lambda: f"judged by {spec.deployment}",
    }
    return names[spec.type]()


# --- reading specs -------------------------------------------------------------------------------


def spec_problems(data: Any) -> list[str]:
    """Every problem of one spec's data, each as `where: what`; empty when it is a good spec."""
    try:
        EvaluatorSpec.model_validate(data)
    except ValidationError as exc:
        return [_problem(error) for error in exc.errors()]
    return []


def _problem(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(_written(str(part)) for part in error["loc"])
    return f"{where}: {message}" if where else message


def parse_evaluators(items: Sequence[Any]) -> tuple[EvaluatorSpec, ...]:
    """A dataset's evaluators from their stored data; raises `ValidationFailed` listing every
    problem at once (`evaluators[2]: regex: pattern ...`), duplicate names included."""
    problems: list[str] = []
    specs: list[EvaluatorSpec] = []
    for index, item in enumerate(items):
        found = spec_problems(item)
        problems += [f"evaluators[{index}]: {problem}" for problem in found]
        if not found:
            specs.append(EvaluatorSpec.model_validate(item))
    names = [spec.name for spec in specs]
    problems += [
        f"evaluators: the name {name!r} is used twice" for name in sorted(set(names)) if names.count(name) > 1
    ]
    if problems:
        raise ValidationFailed("invalid evaluators: " + "; ".join(problems), details=problems)
    return tuple(specs)


# --- scoring -------------------------------------------------------------------------------------


class CannotJudge(Exception):
    """This case cannot be judged by this evaluator (e.g. there is no expected output)."""


def score(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> Score:
    """A built-in evaluator's verdict on one case. Never raises: whatever goes wrong is the
    score's `error`. The LLM judge is not built in (`engine/case_scoring.CaseScorer` runs it)."""
    if outcome.error is not None and spec.type not in ("latency_below", "cost_below"):
        return failed_call(spec, outcome)
    try:
        value = JUDGES[spec.type](spec, case, outcome)
    except CannotJudge as exc:
        return Score(spec.name, None, False, error=str(exc))
    except Exception as exc:  # an evaluator's bug marks the case, never the evaluation
        return Score(spec.name, None, False, error=f"{spec.type} failed: {type(exc).__name__}: {exc}")
    return Score(spec.name, value, value >= spec.threshold)


def failed_call(spec: EvaluatorSpec, outcome: CaseOutcome) -> Score:
    """The verdict of an output-based evaluator on a call that failed: there is no output."""
    return Score(spec.name, None, False, error=f"the call failed: {outcome.error}")


def _target(spec: EvaluatorSpec, case: DatasetCase) -> Any:
    """What the output is compared with: the spec's value, else the case's expected output."""
    if spec.value is not None:
        return spec.value
    if case.expected is None:
        raise CannotJudge(f"{spec.type} compares with the expected output, and this case has none")
    return case.expected


def _normal(spec: EvaluatorSpec, text: str) -> str:
    if spec.ignore_whitespace:
        text = " ".join(text.split())
    return text if spec.case_sensitive else text.casefold()


def _exact_match(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    return float(_normal(spec, outcome.output) == _normal(spec, str(_target(spec, case))))


def _present(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    """The share of the texts that occur in the output."""
    texts = _texts(_target(spec, case)) or []
    output = _normal(spec, outcome.output)
    return sum(_normal(spec, text) in output for text in texts) / len(texts)


def _contains(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    return _present(spec, case, outcome)


def _not_contains(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    return 1.0 - _present(spec, case, outcome)


def _regex(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    flags = 0 if spec.case_sensitive else re.IGNORECASE
    return float(re.search(spec.pattern or "", outcome.output, flags) is not None)


def _json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def _valid_json(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    return float(_json(outcome.output)[0])


def _json_schema(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    valid, data = _json(outcome.output)
    if not valid:
        return 0.0
    validator = validator_for(spec.schema_)(spec.schema_)
    return float(validator.is_valid(data))


@lru_cache(maxsize=256)
def _json_path(path: str) -> JSONPath:
    from jsonpath_ng.ext.parser import parse  # imported by the first evaluation: not a server's hot path

    return parse(path)


def _json_path_equals(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    """Passes when any value the path finds in the output equals the target (the expected
    output is read as JSON when it is JSON, else as text)."""
    target = _target(spec, case)
    if spec.value is None:
        parsed, data = _json(target)
        target = data if parsed else target
    valid, output = _json(outcome.output)
    if not valid:
        return 0.0
    return float(any(_same(match.value, target) for match in _json_path(spec.path or "").find(output)))


def _same(found: Any, target: Any) -> bool:
    if _is_number(found) and _is_number(target):
        return bool(found == target)
    return type(found) is type(target) and found == target


NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _as_number(text: str) -> float | None:
    """`text` as a finite number when it is wholly one."""
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _number_within(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    """Passes when the output is a number, or holds one (the first counts), within the
    tolerance of the target."""
    target = _target(spec, case)
    wanted = float(target) if _is_number(target) else _as_number(str(target))
    if wanted is None:
        raise CannotJudge(f"number_within: the expected output {target!r} is not a number")
    found = _as_number(outcome.output)
    if found is None and (first := NUMBER.search(outcome.output.replace(",", ""))):
        found = float(first.group())
    return float(found is not None and abs(found - wanted) <= spec.tolerance)


def _length(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    size = len(outcome.output)
    low = spec.min_length or 0
    return float(low <= size and (spec.max_length is None or size <= spec.max_length))


def _similarity(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    from rapidfuzz import fuzz  # imported by the first evaluation: not a server's hot path

    measure = getattr(fuzz, spec.method)
    ratio = measure(_normal(spec, outcome.output), _normal(spec, str(_target(spec, case))))
    return round(float(ratio) / 100.0, 6)


def _latency_below(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    return float(outcome.latency_ms <= (spec.max_ms or 0.0))


def _cost_below(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    if outcome.cost is None:
        raise CannotJudge("cost_below: the call's cost is not known (no price for its model)")
    return float(outcome.cost <= (spec.max_usd or 0.0))


def _llm_judge(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> float:
    raise CannotJudge("llm_judge calls a deployment: it runs through the engine (CaseScorer), not score()")


JUDGES: dict[str, Callable[[EvaluatorSpec, DatasetCase, CaseOutcome], float]] = {
    "exact_match": _exact_match,
    "contains": _contains,
    "not_contains": _not_contains,
    "regex": _regex,
    "valid_json": _valid_json,
    "json_schema": _json_schema,
    "json_path": _json_path_equals,
    "number_within": _number_within,
    "length": _length,
    "similarity": _similarity,
    "latency_below": _latency_below,
    "cost_below": _cost_below,
    "llm_judge": _llm_judge,
}
