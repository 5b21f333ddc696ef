"""The diff page's presentation of `version_diff.report`: one block per changed part (model,
a parameter, an input, a message, tools…), each a line diff marked `+`, `-` or ` ` so it
reads without colour too. Long unchanged stretches fold into one "… n unchanged lines"."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

CONTEXT = 3  # unchanged lines kept around a change
FOLD = "…"
PART_TITLES = {
    "model": "Model",
    "tools": "Tools",
    "tool_choice": "Tool choice",
    "response_format": "Response format",
    "template_syntax": "Template syntax",
    "extra_inputs": "Extra inputs",
}
MESSAGE_PART = re.compile(r"^messages\[(\d+)\]$")


@dataclass(frozen=True, slots=True)
class DiffLine:
    sign: str  # "+" added, "-" removed, " " unchanged, "…" folded unchanged lines
    text: str


@dataclass(frozen=True, slots=True)
class DiffBlock:
    part: str
    title: str
    change: str  # added | removed | changed
    lines: tuple[DiffLine, ...]


def title_of(part: str, value: Any) -> str:
    if found := MESSAGE_PART.match(part):
        role = value.get("role") if isinstance(value, dict) else None
        return f"Message {int(found.group(1)) + 1}" + (f" ({role})" if role else "")
    section, _, name = part.partition(".")
    if section == "params":
        return f"Parameter {name}"
    if section == "inputs":
        return f"Input {name}"
    return PART_TITLES.get(part, part)


def as_lines(part: str, value: Any) -> list[str]:
    """A part's value as the lines to compare: a message as its role then its text, a string
    as itself, anything else as indented JSON."""
    if value is None:
        return []
    if MESSAGE_PART.match(part) and isinstance(value, dict):
        return [f"role: {value.get('role')}", *(str(value.get("content", "")).splitlines() or [""])]
    if isinstance(value, str):
        return value.splitlines() or [""]
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def line_diff(before: list[str], after: list[str]) -> list[DiffLine]:
    lines: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    opcodes = matcher.get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            same = before[i1:i2]
            keep_head = CONTEXT if index > 0 else 0
            keep_tail = CONTEXT if index < len(opcodes) - 1 else 0
            if len(same) > keep_head + keep_tail + 1:
                lines += [DiffLine(" ", text) for text in same[:keep_head]]
                folded = len(same) - keep_head - keep_tail
                lines.append(DiffLine(FOLD, f"{folded} unchanged line{'s' if folded != 1 else ''}"))
                lines += [DiffLine(" ", text) for text in same[len(same) - keep_tail :]]
            else:
                lines += [DiffLine(" ", text) for text in same]
            continue
        lines += [DiffLine("-", text) for text in before[i1:i2]]
        lines += [DiffLine("+", text) for text in after[j1:j2]]
    return lines


def blocks(changes: list[dict[str, Any]]) -> list[DiffBlock]:
    """`version_diff.changes(...)` as blocks to render."""
    return [
        DiffBlock(
            part=change["part"],
            title=title_of(change["part"], change["to"] if change["to"] is not None else change["from"]),
            change=change["change"],
            lines=tuple(
                line_diff(as_lines(change["part"], change["from"]), as_lines(change["part"], change["to"]))
            ),
        )
        for change in changes
    ]
