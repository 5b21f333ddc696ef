"""Invoke-time checks of what a caller sent: inputs against a version, and metadata shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from difflib import get_close_matches
from functools import lru_cache
from typing import Any

from promptdeck.domain.content_parts import content_from_data, render_parts, texts_of
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.input_types import schema_problems, type_ok
from promptdeck.domain.media_sources import (
    DEFAULT_POLICY,
    MEDIA_KINDS,
    MediaPolicy,
    is_stored_data_url,
    source_problems,
)
from promptdeck.domain.prompts import InputSpec, Message, PromptSpec
from promptdeck.domain.templating import (
    JINJA2,
    TemplateProblem,
    path_exists,
    paths_in,
    render,
    render_jinja,
    whole_placeholder,
)


@lru_cache(maxsize=1024)  # a version's templates never change: found once, not on every call
def _paths(templates: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(paths_in(templates))


def resolve_inputs(
    spec: PromptSpec, given: Mapping[str, Any], media: MediaPolicy = DEFAULT_POLICY
) -> dict[str, Any]:
    """Values to render with: given ones, then defaults. Lists every problem at once: missing
    inputs, wrong types (an image or document that is no https or data: URL, or one whose media
    type or size this server's `media` policy refuses), schema violations (with their JSON
    paths), unexpected inputs (when
    the version forbids extras) and dotted paths the values do not have. Undeclared inputs are
    otherwise ignored; next to a missing one they are named, with a "did you mean" for each that
    is probably a misspelling (docs/dialects.md)."""
    values: dict[str, Any] = dict(given)
    missing: list[str] = []
    wrong: list[str] = []
    schema: list[str] = []
    for name, decl in spec.inputs.items():
        if name not in values or values[name] is None:
            if decl.default is not None:
                values[name] = decl.default
            elif decl.required:
                missing.append(name)
            else:  # optional, no default: renders as nothing rather than as a literal placeholder
                values[name] = [] if decl.type == "chat_history" else ""
            continue
        if decl.type in MEDIA_KINDS:
            if refused := source_problems(decl.type, values[name], media):
                wrong.append(f"{name} (expected {decl.type}: {'; '.join(refused)})")
        elif not _type_ok(decl, values[name]):
            wrong.append(f"{name} (expected {decl.type}, got {type(values[name]).__name__})")
        elif decl.type == "chat_history" and (refused := media_problems(values[name], media)):
            wrong.append(f"{name} (expected chat_history: {'; '.join(refused)})")
        elif decl.type == "json" and decl.schema is not None:
            schema += [f"{name}: {p}" for p in schema_problems(decl.schema, values[name])]
    undeclared = [name for name in given if name not in spec.inputs]
    unexpected = undeclared if spec.extra_inputs == "forbid" else []
    # A misspelt name is both an undeclared input and a missing one: say which it probably was.
    guesses = close_names(undeclared, missing or list(spec.inputs)) if missing or unexpected else {}
    bad = set(missing) | {w.split(" ", 1)[0] for w in wrong}
    paths = [
        ".".join(steps)
        for steps in ([] if spec.template_syntax == JINJA2 else _paths(_texts(spec)))
        if steps[0] in values and steps[0] not in bad and not path_exists(values[steps[0]], steps[1:])
    ]
    problems = []
    if missing:
        problems.append(
            "missing required input" + ("s" if len(missing) > 1 else "") + ": " + ", ".join(missing)
        )
        if undeclared and not unexpected:  # the misspelt name is probably among them
            problems.append(_ignored(undeclared, guesses))
    if wrong:
        problems.append("wrong input type: " + ", ".join(wrong))
    if schema:
        problems.append("schema violation: " + "; ".join(schema))
    if unexpected:
        problems.append(
            "unexpected input"
            + ("s" if len(unexpected) > 1 else "")
            + " (this version forbids extras): "
            + ", ".join(
                f"{name} (did you mean {guesses[name]!r}?)" if name in guesses else name
                for name in unexpected
            )
        )
    if paths:
        problems.append("missing path" + ("s" if len(paths) > 1 else "") + " in inputs: " + ", ".join(paths))
    if problems:
        details: dict[str, Any] = {"missing": missing, "wrong_type": wrong}
        for key, found in (("schema", schema), ("unexpected", unexpected), ("paths", paths)):
            if found:
                details[key] = found
        if missing and undeclared and not unexpected:
            details["ignored"] = undeclared
        if guesses:
            details["did_you_mean"] = guesses
        raise ValidationFailed("; ".join(problems), details=details, loc=("inputs",))
    return values


def _texts(spec: PromptSpec) -> tuple[str, ...]:
    return tuple(text for message in spec.messages for text in texts_of(message.content))


def close_names(sent: list[str], declared: list[str]) -> dict[str, str]:
    """Each sent name that is probably a misspelling of a declared one (`txt` -> `text`), by
    difflib's similarity ratio, ignoring case."""
    lowered = {name.lower(): name for name in declared}
    guesses: dict[str, str] = {}
    for name in sent:
        found = get_close_matches(name.lower(), list(lowered), n=1, cutoff=SIMILAR)
        if found:
            guesses[name] = lowered[found[0]]
    return guesses


SIMILAR = 0.6  # the similarity (0-1) from which a name reads as a misspelling of another


def _ignored(undeclared: list[str], guesses: dict[str, str]) -> str:
    """The inputs a version ignored, said when another is missing: one is probably misspelt."""
    said = [f"{name} (did you mean {guesses[name]!r}?)" if name in guesses else name for name in undeclared]
    return "ignored undeclared input" + ("s" if len(undeclared) > 1 else "") + ": " + ", ".join(said)


def _type_ok(decl: InputSpec, value: Any) -> bool:
    return type_ok(decl.type, value)


def render_messages(
    spec: PromptSpec,
    values: Mapping[str, Any],
    jinja: Callable[[str, Mapping[str, Any], int], str] = render_jinja,
) -> list[Message]:
    """The version's messages with `values` filled in. A message that is exactly `{{ name }}` of a
    chat_history input is replaced by that history's messages (their contents, strings or
    parts, as given: a history is no template). Jinja2 templates render in the
    sandbox with limits, through `jinja` (a render worker passes one that first says which message
    it starts); that can take up to a second, so the server renders them in worker processes."""
    histories = {name for name, decl in spec.inputs.items() if decl.type == "chat_history"}
    out: list[Message] = []
    problems: list[str] = []
    for index, message in enumerate(spec.messages):
        content = message.content
        slot = whole_placeholder(content) if isinstance(content, str) else None
        if slot in histories and isinstance(values.get(slot), list):
            out.extend(Message(str(m["role"]), content_from_data(m["content"])) for m in values[slot])
            continue

        def render_text(text: str, index: int = index) -> str:
            if spec.template_syntax == JINJA2:
                return jinja(text, values, index)
            return render(text, values)

        try:
            if isinstance(content, str):
                out.append(Message(message.role, render_text(content)))
            else:
                out.append(Message(message.role, render_parts(content, values, render_text)))
        except TemplateProblem as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationFailed("template error: " + "; ".join(problems), details={"template": problems})
    return out


def media_problems(messages: Any, media: MediaPolicy, where: str = "") -> list[str]:
    """Why this server refuses the image and document parts of `{role, content}` messages (a
    chat history's, or a caller's appended ones): the media types and size `media` allows."""
    found: list[str] = []
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in MEDIA_KINDS:
                at = f"{where}[{i}].content[{j}].source"
                found += [f"{at}: {problem}" for problem in source_problems(kind, part.get("source"), media)]
    return found


def check_appended_media(messages: list[dict[str, Any]] | None, media: MediaPolicy) -> None:
    """Refuse a caller's appended messages (OpenAI's `messages`, Vellum's CHAT_HISTORY) whose
    images or documents this server does not take, as an input of theirs would be."""
    if messages and (refused := media_problems(messages, media, "messages")):
        raise ValidationFailed("; ".join(refused), details=refused, loc=("messages",))


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
    """Whether a value sent for an input has the type the input declares (for an image or a
    document, what a run kept of a data: URL counts: it was one)."""
    if decl.type in MEDIA_KINDS and is_stored_data_url(value):
        return True
    return _type_ok(decl, value)
