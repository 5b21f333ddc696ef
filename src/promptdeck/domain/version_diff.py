"""What changed between two versions of a prompt: a unified diff to read, and a list to act on.

Each version is rendered as plain lines (model, params, inputs, messages with their text
as written and a line per image or document part, tools, tool_choice, response_format) and
compared with `difflib`. The
structured list names each changed part by a path such as `model`, `params.temperature`,
`inputs.text`, `messages[1]` or `tools`, with its value before and after (None: absent).
"""

from __future__ import annotations

import difflib
from typing import Any

import orjson

from promptdeck.domain.content_parts import Content, TextPart, kind_of, part_data
from promptdeck.domain.media_sources import parse_data_url
from promptdeck.domain.prompts import OPTIONAL_PARTS, PromptSpec

# parts shown only when set (or, for the last two, when not the default)
DIFFED_PARTS = (*OPTIONAL_PARTS, "template_syntax", "extra_inputs")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def render_lines(spec: PromptSpec) -> list[str]:
    data = spec.to_dict()
    lines = [f"model: {spec.model}", "params:"]
    lines += [f"  {name}: {_json(value)}" for name, value in sorted(data["params"].items())]
    lines.append("inputs:")
    lines += [f"  {name}: {_json(decl)}" for name, decl in sorted(data["inputs"].items())]
    lines.append("messages:")
    for i, message in enumerate(spec.messages):
        lines.append(f"  [{i}] {message.role}:")
        lines += [f"    {line}" for line in _content_lines(message.content)]
    for part in DIFFED_PARTS:
        value = data.get(part)
        if value is not None:
            lines.append(f"{part}: {_json(value)}")
    return lines


def _content_lines(content: Content) -> list[str]:
    """A content's lines: a string's own; for parts, each text part's lines under `text:` and one
    line per image or document (a data: URL by its media type, size and digest, not its bytes)."""
    if isinstance(content, str):
        return content.splitlines() or [""]
    lines: list[str] = []
    for part in content:
        if isinstance(part, TextPart):
            lines += ["text:"] + [f"  {line}" for line in part.text.splitlines() or [""]]
            continue
        data = part_data(part)
        source = data.pop("source")
        parsed = parse_data_url(source)
        if parsed is not None:
            stored = parsed.stored()
            source = f"data:{parsed.media_type} ({stored['size']} bytes, sha256 {stored['sha256'][:12]})"
        extra = "".join(f" {key}={_json(value)}" for key, value in data.items() if key != "type")
        lines.append(f"{kind_of(part)}: {source}{extra}")
    return lines


def unified(old: PromptSpec, new: PromptSpec, old_label: str, new_label: str) -> str:
    return "\n".join(
        difflib.unified_diff(render_lines(old), render_lines(new), old_label, new_label, lineterm="")
    )


def changes(old: PromptSpec, new: PromptSpec) -> list[dict[str, Any]]:
    """Every changed part: `{"part", "change": added|removed|changed, "from", "to"}`."""
    a, b = old.to_dict(), new.to_dict()
    found: list[dict[str, Any]] = []

    def note(part: str, before: Any, after: Any) -> None:
        if before == after:
            return
        kind = "added" if before is None else "removed" if after is None else "changed"
        found.append({"part": part, "change": kind, "from": before, "to": after})

    note("model", a["model"], b["model"])
    for section in ("params", "inputs"):
        for key in sorted(set(a[section]) | set(b[section])):
            note(f"{section}.{key}", a[section].get(key), b[section].get(key))
    old_messages, new_messages = a["messages"], b["messages"]
    for i in range(max(len(old_messages), len(new_messages))):
        note(
            f"messages[{i}]",
            old_messages[i] if i < len(old_messages) else None,
            new_messages[i] if i < len(new_messages) else None,
        )
    for part in DIFFED_PARTS:
        note(part, a.get(part), b.get(part))
    return found


def report(slug: str, old_number: int, old: PromptSpec, new_number: int, new: PromptSpec) -> dict[str, Any]:
    """The whole comparison the admin API answers and the console's diff page shows."""
    return {
        "prompt": slug,
        "from": old_number,
        "to": new_number,
        "identical": old.content_hash == new.content_hash,
        "diff": unified(old, new, f"{slug}@{old_number}", f"{slug}@{new_number}"),
        "changes": changes(old, new),
    }
