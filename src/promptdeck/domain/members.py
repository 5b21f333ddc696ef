"""Console members: roles and what each may do, and the rules for emails and passwords."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from promptdeck.domain.errors import ValidationFailed

# Weakest first: each role may do everything the ones before it may.
ROLES = ("viewer", "editor", "owner")
MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=12)
SESSION_LIFETIME = timedelta(days=7)
INVITE_LIFETIME = timedelta(days=7)
MIN_PASSWORD_CHARS = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def role_allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed(f"role: expected one of {', '.join(ROLES)}; got {role!r}")
    return role


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively: `Ada@Example.com` and `ada@example.com` are one member."""
    cleaned = email.strip().lower()
    if not _EMAIL.match(cleaned) or len(cleaned) > 320:
        raise ValidationFailed(f"email: {email!r} is not an email address")
    return cleaned


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValidationFailed(f"password: use at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > 1024:
        raise ValidationFailed("password: use at most 1024 characters")
    return password


def one_time_password() -> str:
    """A generated first password, easy to type from a terminal (no look-alike characters)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))
