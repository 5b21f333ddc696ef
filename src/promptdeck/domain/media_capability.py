"""Which models take which content parts, known before any call.

Each provider says what its API takes (`Provider.media_family`, one of `FAMILIES`); a model
whose name matches `TEXT_ONLY` takes no image or document whatever its provider. Refusals are
`UnsupportedContent` (a 4xx that names the model and the part), raised before the upstream is
called. A part that the API takes only as bytes (a PDF at a URL, for OpenAI's Chat Completions
and Azure) is not refused: promptdeck fetches it first (`needs_bytes`, engine/media_fetch.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.media_sources import DOCUMENT, IMAGE

# family -> the part types its API takes, and those it takes only as a data: URL (fetched first)
FAMILIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "openai-chat": (frozenset({IMAGE, DOCUMENT}), frozenset({DOCUMENT})),  # `file` has no URL field
    "openai-responses": (frozenset({IMAGE, DOCUMENT}), frozenset()),
    "openai-compatible": (frozenset({IMAGE}), frozenset()),  # `file` parts are OpenAI's own
    "anthropic": (frozenset({IMAGE, DOCUMENT}), frozenset()),
    "gemini": (frozenset({IMAGE, DOCUMENT}), frozenset()),
    "text-only": (frozenset(), frozenset()),  # the embedded model
}
# Models of those providers that read text only (older generations).
TEXT_ONLY = re.compile(
    r"^(gpt-3\.5|gpt-4(-0314|-0613|-32k.*)?$|o1-mini|o1-preview|o3-mini|text-|davinci|babbage"
    r"|claude-2|claude-instant|gemini-1\.0|gemini-pro$)"
)


class UnsupportedContent(ValidationFailed):
    """A part the chosen model cannot take; the caller's to change (model or content)."""


def media_refusal(family: str, model_id: str, model: str, parts: Iterable[Mapping[str, Any]]) -> None:
    """Raise `UnsupportedContent` for the first part `model` (of a provider of `family`) cannot
    take; `model_id` (`provider/model`) is how the message names it."""
    taken, _ = FAMILIES.get(family, FAMILIES["text-only"])
    if TEXT_ONLY.match(model):
        taken = frozenset()
    for part in parts:
        kind = str(part.get("type"))
        if kind not in taken:
            reason = "it reads text only" if not taken else f"its API takes no {kind} parts"
            raise UnsupportedContent(
                f"model {model_id!r} cannot take {kind} parts: {reason}; "
                f"choose a model that takes {kind}s, or remove the part",
                details={"model": model_id, "part": kind},
                loc=("model",),
            )


def needs_bytes(family: str, part: Mapping[str, Any]) -> bool:
    """Whether promptdeck must fetch `part`'s URL itself before calling a provider of `family`:
    its API takes that kind of part only as the file's bytes (a data: URL)."""
    _, bytes_only = FAMILIES.get(family, FAMILIES["text-only"])
    source = part.get("source")
    return part.get("type") in bytes_only and isinstance(source, str) and not source.startswith("data:")
