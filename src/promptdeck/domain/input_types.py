"""What a value of each input type must be: the type itself, a `json` input's JSON Schema
(checked with `jsonschema`), a `chat_history` input's list of messages (each content a string
or a list of parts), and an `image` or `document` input's https or `data:` URL
(domain/media_sources.py; what a server allows of them is checked at invoke time,
`inputs.resolve_inputs`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from jsonschema import SchemaError, validators

from promptdeck.domain.content_parts import TextPart, kind_of, parse_parts
from promptdeck.domain.media_sources import MEDIA_KINDS, source_shape_problem

CHAT_ROLES = ("system", "user", "assistant")

_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


def type_ok(kind: str, value: Any) -> bool:
    """Whether a value has the input type's shape (`json` takes anything)."""
    if kind == "chat_history":
        return not chat_history_problems(value)
    if kind in MEDIA_KINDS:
        return source_shape_problem(kind, value) is None
    accepted = _TYPE_CHECKS.get(kind)
    if accepted is None:
        return True
    if kind != "boolean" and isinstance(value, bool):
        return False
    return isinstance(value, accepted)


def chat_history_problems(value: Any) -> list[str]:
    if not isinstance(value, list):
        return [f"expected a list of {{role, content}} messages, got {type(value).__name__}"]
    problems = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.append(f"[{i}]: expected an object with role and content")
            continue
        if item.get("role") not in CHAT_ROLES:
            problems.append(f"[{i}].role: expected one of {', '.join(CHAT_ROLES)}; got {item.get('role')!r}")
        content = item.get("content")
        if not isinstance(content, str):
            problems += history_parts_problems(content, f"[{i}].content")
    return problems


def history_parts_problems(raw: Any, where: str) -> list[str]:
    """Why a chat history message's content, when not a string, is no list of parts: the
    version's part shape (domain/content_parts.py), each source an https or a `data:` URL
    (a caller's history binds no `{{ variable }}`)."""
    if not isinstance(raw, list):
        return [f"{where}: expected a string, or a list of parts ({{type, ...}} objects)"]
    parts, problems = parse_parts(raw, where)
    if problems:
        return problems
    return [
        f"{where}[{j}].source: {problem}"
        for j, part in enumerate(parts)
        if not isinstance(part, TextPart) and (problem := source_shape_problem(kind_of(part), part.source))
    ]


def schema_error(schema: dict[str, Any]) -> str | None:
    """Why a JSON Schema is not one, or None."""
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        return str(exc.message)
    return None


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    schema = orjson.loads(schema_json)
    return validators.validator_for(schema)(schema)


def schema_problems(schema: dict[str, Any], value: Any) -> list[str]:
    """Every way a value breaks a schema, each with the JSON path it concerns (`$.items[0].sku`)."""
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())
    errors = sorted(validator.iter_errors(value), key=lambda e: (e.json_path, e.message))
    return [f"schema violation at {error.json_path}: {error.message}" for error in errors]


def value_problems(kind: str, schema: dict[str, Any] | None, value: Any) -> list[str]:
    """Why a value does not fit an input declaration (empty when it does)."""
    if kind == "chat_history":
        return [f"expected chat_history: {p}" for p in chat_history_problems(value)]
    if kind in MEDIA_KINDS and (problem := source_shape_problem(kind, value)) is not None:
        return [f"expected {kind}: {problem}"]
    if not type_ok(kind, value):
        return [f"expected {kind}, got {type(value).__name__}"]
    if kind == "json" and schema is not None:
        return schema_problems(schema, value)
    return []
