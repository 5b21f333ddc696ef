"""Every problem of a request body (or a setting, a variant config, a price) at once, from the
`ValidationError` of its pydantic model:
where each one is (the error's `loc`, as a path a person can find in the body) and what was
expected and what was got. Each dialect turns these into its own error shape (an OpenAI
`param`, a Vellum `detail`, a Fetch Hive `message`); none of them reads a message's words.

Paths: object keys joined by `.`, array positions in brackets: `messages[0].content`,
`tools[1].function.name`, `stream_options.include_usage` (OpenAI's own style for `param`).
A key that is not a plain name is quoted: `metadata["a b"]`.

Unions say which of their shapes a value took with a tag (pydantic puts it in `loc`): a tag
that starts with `~` (e.g. `~parts`) is left out of the path; one that starts with `=` names
the value of a `type` field (e.g. `=FUNCTION_CALL`), is left out of the path too, and is said
after the message: `… expected an object; got a string (type FUNCTION_CALL)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError, WithJsonSchema
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
Found = list[tuple[Loc, PydanticCustomError, Any]]  # problems a model's own check found: where, what, got
SILENT_TAG = "~"
TYPE_TAG = "="
CHOICE = "choice"  # the error type of a union none of whose shapes fits (see `choice_error`)
UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")  # a model's, a dataclass's
WHERE = ("body",)  # where FastAPI says a value came from; the body is the default, left unsaid
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_WORDS = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: the field it is about (`loc`, tags removed; empty: the body as a whole),
    what was expected and got (`message`), and the union shape it was checked as, if any."""

    loc: Loc
    message: str
    shape: str | None = None

    @property
    def path(self) -> str:
        return path_of(self.loc)

    def __str__(self) -> str:
        said = f"{self.message} (type {self.shape})" if self.shape else self.message
        return f"{self.path}: {said}" if self.loc else said


def path_of(loc: Iterable[str | int]) -> str:
    """`("messages", 0, "content")` → `messages[0].content`."""
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _NAME.match(step):
            out += f".{step}" if out else step
        else:
            out += f"[{step!r}]"
    return out


def problems(error: ValidationError) -> list[Problem]:
    """Every problem of a failed validation, in the order pydantic found them."""
    return [problem(detail) for detail in error.errors(include_url=False)]


def lines(errors: Iterable[ErrorDetails]) -> list[str]:
    """Every problem, one line each (`retries.max_attempts: expected …`); FastAPI's `body`
    prefix is left unsaid, and a problem of the whole body is said as the body's."""
    found = []
    for detail in errors:
        loc = tuple(detail["loc"])
        said = problem({**detail, "loc": loc[1:] if loc[:1] and loc[0] in WHERE else loc})
        found.append(str(said) if said.loc else f"body: {said}")
    return found


def problem(detail: ErrorDetails) -> Problem:
    loc: list[str | int] = []
    shape = None
    for step in detail["loc"]:
        if isinstance(step, str) and step[:1] in (SILENT_TAG, TYPE_TAG):
            if step[0] == TYPE_TAG:
                shape = step[1:]
            continue
        loc.append(step)
    value = detail.get("input")
    ctx = detail.get("ctx") or {}
    if detail["type"] == CHOICE and isinstance(ctx.get("field"), str) and isinstance(value, dict):
        loc.append(ctx["field"])  # the field that chose the shape is the one that is wrong
        value = value.get(ctx["field"])
    return Problem(tuple(loc), explain(detail, value, not loc), shape)


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


# What each of pydantic's error types means, in words (its own are written for developers).
_EXPECTED: dict[str, Callable[[dict[str, Any]], str]] = {
    "string_type": lambda c: "expected a string",
    "int_type": lambda c: "expected an integer",
    "int_from_float": lambda c: "expected an integer",
    "float_type": lambda c: "expected a number",
    "bool_type": lambda c: "expected true or false",
    "dict_type": lambda c: "expected an object",
    "list_type": lambda c: "expected an array",
    "none_required": lambda c: "expected null",
    "literal_error": lambda c: f"expected {c.get('expected')}",
    "string_too_short": lambda c: (
        "expected a non-empty string"
        if c.get("min_length") == 1
        else f"expected at least {c.get('min_length')} characters"
    ),
    "string_too_long": lambda c: f"expected at most {c.get('max_length')} characters",
    "too_short": lambda c: (
        "expected a non-empty array"
        if c.get("min_length") == 1
        else f"expected at least {c.get('min_length')} items"
    ),
    "too_long": lambda c: f"expected at most {c.get('max_length')} items",
    "greater_than_equal": lambda c: f"expected a number from {c.get('ge')}",
    "less_than_equal": lambda c: f"expected a number up to {c.get('le')}",
    "greater_than": lambda c: f"expected a number above {c.get('gt')}",
    "less_than": lambda c: f"expected a number below {c.get('lt')}",
    "finite_number": lambda c: "expected a finite number",
    "uuid_type": lambda c: "expected a UUID, like '123e4567-e89b-12d3-a456-426614174000'",
    "uuid_parsing": lambda c: "expected a UUID, like '123e4567-e89b-12d3-a456-426614174000'",
    "datetime_type": lambda c: "expected an ISO 8601 date and time, like '2025-01-31T12:00:00Z'",
    "datetime_parsing": lambda c: "expected an ISO 8601 date and time, like '2025-01-31T12:00:00Z'",
    "datetime_from_date_parsing": lambda c: "expected an ISO 8601 date and time, like '2025-01-31T12:00:00Z'",
}


def explain(detail: ErrorDetails, value: Any, whole_body: bool) -> str:
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind in UNKNOWN:
        return "unknown field"
    if kind in ("model_type", "model_attributes_type"):
        if whole_body:
            return f"the request body must be a JSON object; got {described(value)}"
        noun = _WORDS.sub(" ", str(ctx.get("class_name") or "")).lower()
        return f"expected {_a(noun + ' object') if noun else 'an object'}; got {described(value)}"
    expected = _EXPECTED.get(kind)
    if expected is not None:
        return f"{expected(ctx)}; got {described(value)}"
    if kind == CHOICE:
        return f"{detail['msg']}; got {described(value)}"
    return detail["msg"]  # our own errors (`fail`) say what they expected and got


def described(value: Any) -> str:
    """A value as a message shows what was got: short scalars as they are, the rest by kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"a string of {len(value)} characters"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "an object" if value else "an empty object"
    return type(value).__name__


# ── for the models ──────────────────────────────────────────────────────────


def fail(kind: str, message: str) -> PydanticCustomError:
    """A problem a model's own check found; `message` says what was expected and got. Braces
    are escaped: pydantic would read them as placeholders."""
    return PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"))


def at(title: str, found: Found) -> ValidationError:
    """Problems at given fields, to raise from a model validator (their `loc` is relative to
    the model's own)."""
    return ValidationError.from_exception_data(
        title, [InitErrorDetails(type=error, loc=loc, input=value) for loc, error, value in found]
    )


def with_more(title: str, error: ValidationError, more: Found) -> ValidationError:
    """`error`'s problems and `more`, as one error: a check across fields, reported with the
    problems of the fields themselves."""
    kept = [
        InitErrorDetails(
            type=PydanticCustomError(
                detail["type"], detail["msg"].replace("{", "{{").replace("}", "}}"), detail.get("ctx")
            ),
            loc=detail["loc"],
            input=detail.get("input"),
        )
        for detail in error.errors(include_url=False)
    ]
    more_details = [InitErrorDetails(type=e, loc=loc, input=value) for loc, e, value in more]
    return ValidationError.from_exception_data(title, [*more_details, *kept])


def exactly_one(data: Any, first: str, second: str) -> Found:
    """The problem of a body that gives both or neither of two fields that name one thing."""
    if not isinstance(data, dict) or (data.get(first) is None) != (data.get(second) is None):
        return []
    return [((), fail("exactly_one", f"give exactly one of {first} and {second}"), None)]


def by_type(value: Any) -> str | None:
    """The tag of an object by its `type` field (`=STRING`); None when it has none."""
    if isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str):
            return TYPE_TAG + kind
    return None


def _flat(metadata: dict[str, Any]) -> dict[str, Any]:
    if "" in metadata:
        raise fail("flat_metadata", "keys must be non-empty strings; got the key ''")
    nested = [key for key, value in metadata.items() if isinstance(value, dict | list)]
    if nested:
        said = ", ".join(
            f"{key!r} is {'an object' if isinstance(metadata[key], dict) else 'an array'}" for key in nested
        )
        raise fail("flat_metadata", f"must be flat: {said}; use only strings, numbers, booleans or null")
    return metadata


FlatMetadata = Annotated[
    dict[str, Any],
    AfterValidator(_flat),
    WithJsonSchema(
        {
            "type": "object",
            "description": "flat: key -> string, number, boolean or null",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        }
    ),
]
"""Caller metadata: an object of non-empty keys and scalar values (null allowed)."""
NonEmptyStr = Annotated[str, Field(min_length=1)]
