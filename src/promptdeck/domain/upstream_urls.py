"""Upstream base URLs: which URL a credential may go to, and what a stored base URL may hold."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit


def base_urls(spec: str) -> tuple[str, ...]:
    """The allow-list setting, `https://a.example/v1,https://b.example`, as normalized base URLs."""
    return tuple(url.strip().rstrip("/") for url in spec.replace(";", ",").split(",") if url.strip())


@lru_cache(maxsize=4096)  # every call asks it, of a handful of (URL, base URL) pairs: ~8 µs saved
def is_under(url: str, base: str) -> bool:
    """Whether `url` is `base` or a path below it: same scheme, host and port, no user info,
    and a path that continues `base`'s at a segment boundary (`/v1` covers `/v1/x`, not `/v10`)."""
    try:
        target, home = urlsplit(url), urlsplit(base.rstrip("/"))
        same_origin = (target.scheme.lower(), target.hostname, target.port) == (
            home.scheme.lower(),
            home.hostname,
            home.port,
        )
    except ValueError:  # a port that is no number
        return False
    if not same_origin or target.username is not None or target.password is not None:
        return False
    path = target.path.rstrip("/")
    return path == home.path or path.startswith(home.path + "/")


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream's base URL, or None. A user name or password in it would
    be a secret kept in plain text and shown wherever the URL is, so the secret goes in the
    credential's API key instead."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is no number
    except ValueError as exc:
        return f"base_url: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "base_url: expected an http(s) URL such as https://api.example.com/v1"
    if parts.username is not None or parts.password is not None:
        return "base_url: must not hold a user name or password; put the secret in api_key"
    if parts.query or parts.fragment:
        return "base_url: must not hold a query or fragment; put a token in api_key"
    return None
