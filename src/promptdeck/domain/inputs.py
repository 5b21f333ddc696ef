"""Invoke-time checks of what a caller sent: inputs against a version, and metadata shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.prompts import InputSpec, Message, PromptSpec
from promptdeck.domain.templating import render

_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


def resolve_inputs(spec: PromptSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """Values to render with: given ones, then defaults. Lists every problem at once."""
    values: dict[str, Any] = dict(given)
    missing: list[str] = []
    wrong: list[str] = []
    for name, decl in spec.inputs.items():
        if name not in values or values[name] is None:
            if decl.default is not None:
                values[name] = decl.default
            elif decl.required:
                missing.append(name)
            else:  # optional, no default: renders as nothing rather than as a literal placeholder
                values[name] = ""
            continue
        if not _type_ok(decl, values[name]):
            wrong.append(f"{name} (expected {decl.type}, got {type(values[name]).__name__})")
    problems = []
    if missing:
        problems.append(
            "missing required input" + ("s" if len(missing) > 1 else "") + ": " + ", ".join(missing)
        )
    if wrong:
        problems.append("wrong input type: " + ", ".join(wrong))
    if problems:
        raise ValidationFailed("; ".join(problems), details={"missing": missing, "wrong_type": wrong})
    return values


def _type_ok(decl: InputSpec, value: Any) -> bool:
    accepted = _TYPE_CHECKS.get(decl.type)
    if accepted is None:  # json accepts anything
        return True
    if decl.type != "boolean" and isinstance(value, bool):
        return False
    return isinstance(value, accepted)


def render_messages(spec: PromptSpec, values: Mapping[str, Any]) -> list[Message]:
    return [Message(m.role, render(m.content, values)) for m in spec.messages]


def check_flat_metadata(metadata: Any) -> dict[str, str | int | float | bool | None]:
    """Metadata must be a flat object: non-empty string keys, scalar values."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationFailed("metadata must be an object of key -> string, number, boolean or null")
    for key, value in metadata.items():
        if not key:
            raise ValidationFailed("metadata keys must be non-empty strings")
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise ValidationFailed(
                f"metadata must be flat: the value of {key!r} is "
                f"{'an object' if isinstance(value, dict) else 'a list'}; "
                "use only strings, numbers, booleans or null"
            )
    return metadata


def value_fits(decl: InputSpec, value: Any) -> bool:
    """Whether a value sent for an input has the type the input declares."""
    return _type_ok(decl, value)
