"""API keys: random secrets shown once, kept only as a SHA-256 hash and a visible prefix."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "pd_"
VISIBLE_CHARS = 10
SCOPES = ("invoke", "read", "admin")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_CHARS]


def allows(scopes: tuple[str, ...], needed: str) -> bool:
    """`admin` implies every scope; `read` is implied by admin only."""
    return needed in scopes or "admin" in scopes
