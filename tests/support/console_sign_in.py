"""Signing in to the console over HTTP, as a browser does: for tests and benchmarks that read
console pages with httpx."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx


@contextmanager
def signed_in_client(
    base_url: str, email: str, password: str, timeout: float = 30
) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx client signed in through the sign-in form, and the session's CSRF token."""
    with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False) as client:
        client.get("/sign-in")
        token = client.cookies["promptdeck_form_csrf"]
        answer = client.post("/sign-in", data={"email": email, "password": password, "csrf_token": token})
        if answer.status_code != 303:
            raise AssertionError(f"signing in as {email}: HTTP {answer.status_code}: {answer.text[:500]}")
        page = client.get("/settings")
        if page.status_code != 200:
            raise AssertionError(f"/settings after signing in: HTTP {page.status_code}: {page.text[:500]}")
        yield client, page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
