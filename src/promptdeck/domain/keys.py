"""API keys: random secrets shown once, kept only as a SHA-256 hash and a visible prefix."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "pd_"
KEY_BYTES = 30  # random bytes; URL-safe base64 makes them 40 characters, never padded
VISIBLE_CHARS = 10
SCOPES = ("invoke", "read", "admin")
_KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{40}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def could_be_key(secret: str) -> bool:
    """Whether `secret` has the shape `new_key` gives every key: anything else is refused
    without a database look-up or a cache entry."""
    return _KEY_SHAPE.fullmatch(secret) is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_CHARS]


def allows(scopes: tuple[str, ...], needed: str) -> bool:
    """`admin` implies every scope; `read` is implied by admin only."""
    return needed in scopes or "admin" in scopes
