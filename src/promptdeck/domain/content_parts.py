"""A message's content as a list of parts: text, image and document.

A message's content is a string (as it always was) or a list of parts:

* `{type: text, text}` — a template, rendered like a string content;
* `{type: image, source, detail?}` — `detail` is `auto`, `low` or `high`;
* `{type: document, source, media_type?, name?}` — a PDF.

A source is a fixed https URL, a base64 `data:` URL, or exactly `{{ name }}`: bound to the
input `name` (an `image` or `document` input; declared as one when the version does not).
The same shape, with each source rendered, is what providers receive (`providers/base.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from promptdeck.domain.media_sources import DOCUMENT, IMAGE, source_shape_problem, without_payloads
from promptdeck.domain.templating import whole_placeholder
from promptdeck.domain.values import immutable

TEXT = "text"
PART_TYPES = (TEXT, IMAGE, DOCUMENT)
DETAILS = ("auto", "low", "high")


@immutable
class TextPart:
    text: str


@immutable
class ImagePart:
    source: str
    detail: str | None = None


@immutable
class DocumentPart:
    source: str
    media_type: str | None = None
    name: str | None = None


Part = TextPart | ImagePart | DocumentPart
Parts = tuple[Part, ...]
Content = str | Parts
MediaPart = ImagePart | DocumentPart


def kind_of(part: Part) -> str:
    return TEXT if isinstance(part, TextPart) else IMAGE if isinstance(part, ImagePart) else DOCUMENT


def part_data(part: Part) -> dict[str, Any]:
    """A part as plain data, keys in a fixed order and optional ones only when set: the same
    part always gives the same bytes (content hash, pulled files)."""
    if isinstance(part, TextPart):
        return {"type": TEXT, "text": part.text}
    if isinstance(part, ImagePart):
        out: dict[str, Any] = {"type": IMAGE, "source": part.source}
        if part.detail is not None:
            out["detail"] = part.detail
        return out
    out = {"type": DOCUMENT, "source": part.source}
    if part.media_type is not None:
        out["media_type"] = part.media_type
    if part.name is not None:
        out["name"] = part.name
    return out


def content_data(content: Content) -> str | list[dict[str, Any]]:
    return content if isinstance(content, str) else [part_data(part) for part in content]


def content_from_data(raw: str | list[dict[str, Any]]) -> Content:
    """Stored content back as it was saved (it was checked then)."""
    if isinstance(raw, str):
        return raw
    parts, problems = parse_parts(raw, "content")
    if problems:
        raise ValueError("; ".join(problems))
    return parts


def parse_parts(raw: Any, where: str) -> tuple[Parts, list[str]]:
    """A list of parts and every problem of it, each starting with `where[i]`."""
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        return (), [f"{where}: expected a string, or a non-empty list of parts ({{type, ...}} objects)"]
    parts: list[Part] = []
    problems: list[str] = []
    for i, item in enumerate(raw):
        part, errors = _parse_part(item, f"{where}[{i}]")
        problems += errors
        if part is not None:
            parts.append(part)
    return tuple(parts), problems


def _parse_part(item: Any, at: str) -> tuple[Part | None, list[str]]:
    kind = item.get("type") if isinstance(item, dict) else None
    if kind not in PART_TYPES:
        return None, [f"{at}.type: expected one of {', '.join(PART_TYPES)}; got {kind!r}"]
    allowed = {TEXT: {"type", "text"}, IMAGE: {"type", "source", "detail"}}.get(
        kind, {"type", "source", "media_type", "name"}
    )
    problems = [f"{at}.{key}: unknown field for {kind} parts" for key in item if key not in allowed]
    if kind == TEXT:
        if not isinstance(item.get("text"), str):
            return None, [*problems, f"{at}.text: expected a string"]
        return (TextPart(item["text"]) if not problems else None), problems
    source = item.get("source")
    bound = isinstance(source, str) and whole_placeholder(source) is not None
    if not bound and (problem := source_shape_problem(kind, source)) is not None:
        problems.append(f"{at}.source: {problem}, or {{{{ variable }}}}")
    optional = {key: item.get(key) for key in allowed - {"type", "source"}}
    for key, value in optional.items():
        if value is not None and not isinstance(value, str):
            problems.append(f"{at}.{key}: expected a string")
    if kind == IMAGE and optional["detail"] not in (None, *DETAILS):
        problems.append(f"{at}.detail: expected one of {', '.join(DETAILS)}; got {optional['detail']!r}")
    media_type = optional.get("media_type")
    if kind == DOCUMENT and media_type is not None and media_type != "application/pdf":
        problems.append(f"{at}.media_type: only application/pdf documents are supported; got {media_type!r}")
    if problems:
        return None, problems
    if kind == IMAGE:
        return ImagePart(source, optional["detail"]), []
    return DocumentPart(source, optional["media_type"], optional["name"]), []


def texts_of(content: Content) -> list[str]:
    """The templates of a content: itself, or its text parts."""
    if isinstance(content, str):
        return [content]
    return [part.text for part in content if isinstance(part, TextPart)]


def bound_inputs(contents: Iterable[Content]) -> dict[str, str]:
    """Input name -> `image` or `document`, for each part whose source is `{{ name }}`."""
    bound: dict[str, str] = {}
    for content in contents:
        for part in () if isinstance(content, str) else content:
            if not isinstance(part, TextPart) and (name := whole_placeholder(part.source)) is not None:
                bound.setdefault(name, kind_of(part))
    return bound


def render_parts(parts: Parts, values: Mapping[str, Any], render_text: Callable[[str], str]) -> Parts:
    """The parts with each text rendered and each bound source replaced by its input's value;
    a bound part whose (optional) input is empty is left out."""
    out: list[Part] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append(TextPart(render_text(part.text)))
            continue
        name = whole_placeholder(part.source)
        source = part.source if name is None else values.get(name)
        if not source:
            continue
        if isinstance(part, ImagePart):
            out.append(ImagePart(str(source), part.detail))
        else:
            out.append(DocumentPart(str(source), part.media_type, part.name))
    return tuple(out)


def media_in(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The image and document parts of neutral messages (`{role, content}` dicts), in order."""
    return [
        part
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") in (IMAGE, DOCUMENT)
    ]


def stored_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages as a run keeps them: each data: URL source as its media type, size and
    SHA-256 (`media_sources.stored_source`); the same list when there is none."""
    if not any(isinstance(message.get("content"), list) for message in messages):
        return messages
    kept: list[dict[str, Any]] = without_payloads(messages)
    return kept
