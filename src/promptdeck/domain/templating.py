"""`{{ name }}` templates: find the variables a message uses and render them.

Non-string values render as compact JSON, so a list or an object reaches the
model the same way whichever client sent it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def variables_in(templates: Iterable[str]) -> list[str]:
    """Variable names in order of first appearance."""
    seen: dict[str, None] = {}
    for template in templates:
        for match in PLACEHOLDER.finditer(template):
            seen.setdefault(match.group(1), None)
    return list(seen)


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def render(template: str, values: Mapping[str, Any]) -> str:
    """Replace every placeholder whose name is in `values`; leave others as they are."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        return as_text(values[name])

    return PLACEHOLDER.sub(substitute, template)
