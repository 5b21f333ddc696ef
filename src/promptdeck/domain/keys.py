"""API keys: random secrets shown once, kept only as a SHA-256 hash and a visible prefix."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from promptdeck.domain.errors import Forbidden, ValidationFailed

KEY_PREFIX = "pd_"
KEY_BYTES = 30  # random bytes; URL-safe base64 makes them 40 characters, never padded
VISIBLE_CHARS = 10
SCOPES = ("invoke", "read", "admin")  # what each allows: docs/governance.md "Keys and scopes"
GRACE_SECONDS = 86_400  # how long a rotated key keeps working, unless the rotation says otherwise
MAX_GRACE_SECONDS = 90 * 86_400
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


def check_deployment(allowed: tuple[str, ...] | None, deployment: str) -> None:
    """Refuse a call to a deployment outside a key's list (None: every deployment). Checked before
    the name is looked up, so a refusal says nothing about whether the name exists."""
    if allowed is not None and deployment not in allowed:
        listed = ", ".join(allowed) or "none"
        raise Forbidden(f"this API key may not call deployment {deployment!r}; it may call only: {listed}")


def expiry(at: datetime | None, in_days: float | None, now: datetime) -> datetime | None:
    """A new key's expiry from either form a request may give it (None: it never expires)."""
    if at is not None and in_days is not None:
        raise ValidationFailed("give expires_at or expires_in_days, not both")
    if in_days is not None:
        return now + timedelta(days=in_days)
    if at is not None and at <= now:
        raise ValidationFailed(f"expires_at must be in the future; got {at.isoformat()}")
    return at


def old_key_expiry(grace_seconds: int | None, at: datetime | None, now: datetime) -> datetime:
    """When a rotated key stops working: after the grace period (default 24 h) or at `at`."""
    if grace_seconds is not None and at is not None:
        raise ValidationFailed("give grace_seconds or old_expires_at, not both")
    if at is not None:
        if at > now + timedelta(seconds=MAX_GRACE_SECONDS):
            raise ValidationFailed(f"old_expires_at may be at most {MAX_GRACE_SECONDS // 86400} days away")
        return max(at, now)
    return now + timedelta(seconds=GRACE_SECONDS if grace_seconds is None else grace_seconds)
