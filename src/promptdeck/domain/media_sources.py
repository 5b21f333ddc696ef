"""Where an image or a document comes from: an https URL or a `data:` URL, what a server allows
of them (`MediaPolicy`), and what a run keeps of them.

A `data:` URL carries the file itself, base64-encoded; promptdeck never stores or logs one
whole. A run keeps an https URL as it is, and a `data:` URL as `{media_type, size, sha256}`
(`stored_source`, `without_payloads`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IMAGE = "image"
DOCUMENT = "document"
MEDIA_KINDS = (IMAGE, DOCUMENT)
DEFAULT_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
DEFAULT_DOCUMENT_TYPES = ("application/pdf",)
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# What a media type is guessed as when a URL's name does not say (providers that must name one).
FALLBACK_TYPES = {IMAGE: "image/jpeg", DOCUMENT: "application/pdf"}
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64,", re.IGNORECASE)
STORED_KEYS = frozenset({"media_type", "size", "sha256"})


@dataclass(frozen=True, slots=True)
class DataUrl:
    """A parsed base64 `data:` URL: its media type (lower case) and its base64 payload."""

    media_type: str
    payload: str

    @property
    def size(self) -> int:
        """Decoded bytes, from the payload's length (no decoding)."""
        padding = len(self.payload) - len(self.payload.rstrip("="))
        return len(self.payload) * 3 // 4 - padding

    def stored(self) -> dict[str, Any]:
        digest = hashlib.sha256(base64.b64decode(self.payload)).hexdigest()
        return {"media_type": self.media_type, "size": self.size, "sha256": digest}


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """What a server accepts as an `image` or `document` input (config.py's `PROMPTDECK_MEDIA_*`)."""

    image_types: tuple[str, ...] = DEFAULT_IMAGE_TYPES
    document_types: tuple[str, ...] = DEFAULT_DOCUMENT_TYPES
    max_bytes: int = DEFAULT_MAX_BYTES

    def types(self, kind: str) -> tuple[str, ...]:
        return self.image_types if kind == IMAGE else self.document_types

    @classmethod
    def from_settings(cls, image_types: str, document_types: str, max_bytes: int) -> MediaPolicy:
        """From comma-separated media type lists (`image/png,image/jpeg`)."""

        def listed(text: str) -> tuple[str, ...]:
            return tuple(item.strip().lower() for item in text.split(",") if item.strip())

        return cls(listed(image_types), listed(document_types), max_bytes)


DEFAULT_POLICY = MediaPolicy()


def parse_data_url(value: str) -> DataUrl | None:
    """A base64 `data:` URL with a media type, or None for anything else."""
    match = _DATA_URL.match(value)
    if match is None:
        return None
    return DataUrl(match.group(1).lower(), value[match.end() :])


def is_https_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and not any(c.isspace() for c in value)


def source_shape_problem(kind: str, value: Any) -> str | None:
    """Why a value is not an https URL or a well-formed base64 `data:` URL of the kind's family
    (`image/*` for an image, `application/pdf` for a document), or None. Server policy aside."""
    if not isinstance(value, str):
        return f"expected an https URL or a data: URL, got {type(value).__name__}"
    if value.startswith("data:"):
        data = parse_data_url(value)
        if data is None:
            return "expected a base64 data: URL with a media type (data:image/png;base64,...)"
        family = "image/" if kind == IMAGE else "application/pdf"
        if not data.media_type.startswith(family):
            return f"{kind}s cannot be {data.media_type}"
        try:
            base64.b64decode(data.payload, validate=True)
        except (binascii.Error, ValueError):
            return "the data: URL's payload is not valid base64"
        return None
    if not is_https_url(value):
        return f"expected an https URL or a data: URL, got {_shown(value)!r}"
    return None


def source_problems(kind: str, value: Any, policy: MediaPolicy = DEFAULT_POLICY) -> list[str]:
    """Why a value sent for an `image` or `document` input does not fit this server."""
    problem = source_shape_problem(kind, value)
    if problem is not None:
        return [problem]
    data = parse_data_url(value)
    if data is None:
        return []
    problems = []
    allowed = policy.types(kind)
    if data.media_type not in allowed:
        problems.append(f"{data.media_type} is not allowed here (allowed: {', '.join(allowed)})")
    if data.size > policy.max_bytes:
        problems.append(f"{data.size} bytes is over this server's limit of {policy.max_bytes}")
    return problems


def media_type_of(kind: str, source: str, declared: str | None = None) -> str:
    """A source's media type: a data: URL's own, else the declared one, else guessed from the
    URL's file name, else the kind's usual one."""
    data = parse_data_url(source)
    if data is not None:
        return data.media_type
    if declared:
        return declared
    guessed, _ = mimetypes.guess_type(urlsplit(source).path)
    return guessed or FALLBACK_TYPES[kind]


def file_name(part: Mapping[str, Any]) -> str:
    """The name a document part goes to a provider under: its own, else the URL's last path
    segment, else `document.pdf` (APIs that take bytes want a file name with them)."""
    if part.get("name"):
        return str(part["name"])
    source = str(part.get("source") or "")
    last = "" if source.startswith("data:") else urlsplit(source).path.rsplit("/", 1)[-1]
    return last or "document.pdf"


def stored_source(source: Any) -> Any:
    """What a run keeps of a source: a URL as it is, a data: URL as `{media_type, size, sha256}`."""
    data = parse_data_url(source) if isinstance(source, str) else None
    if data is None:
        return source
    try:
        return data.stored()
    except (binascii.Error, ValueError):  # not base64 after all: the digest of its text
        return {"media_type": data.media_type, "size": len(data.payload), "sha256": _sha(data.payload)}


def is_stored_data_url(value: Any) -> bool:
    """Whether a value is what a run kept of a data: URL."""
    return isinstance(value, dict) and set(value) == STORED_KEYS


def without_payloads(value: Any, depth: int = 0) -> Any:
    """`value` with every data: URL in it (nested in lists and objects too, down to
    `MAX_DEPTH`) as `stored_source` says; the same object when it holds none, so a run without
    media costs no copy."""
    if isinstance(value, str):
        return stored_source(value) if value.startswith("data:") else value
    if depth >= MAX_DEPTH:
        return value
    if isinstance(value, list):
        items = [without_payloads(item, depth + 1) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        pairs = {key: without_payloads(item, depth + 1) for key, item in value.items()}
        return value if all(pairs[key] is value[key] for key in value) else pairs
    return value


MAX_DEPTH = 64  # deeper than any message or input shape; keeps a hostile nesting off the stack


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _shown(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."
