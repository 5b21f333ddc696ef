"""Calling a live promptdeck's Fetch Hive invoke (`POST /v1/prompt/invoke`) from a test: one
helper for every test module, whether it holds a running server (`Deck`, the console's
`Console`) or an open client.

    invoke(deck, "fast")                                   # with INPUTS
    invoke(client, "fast", variant="beta", user="ann")     # fields left None are not sent
    invoke(deck, "loop", {"items": ["a"]}, expect=200)     # asserts the status
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import httpx

INPUTS = {"text": "The quick brown fox jumps over the lazy dog.", "audience": "kids"}


class Server(Protocol):
    """A running server and its admin key (`tests.conftest.Deck`, the console tests' `Console`)."""

    @property
    def url(self) -> str: ...

    admin_key: str


def invoke(
    target: Server | httpx.Client,
    deployment: str = "fast",
    inputs: dict[str, Any] | None = None,
    *,
    expect: int | tuple[int, ...] | None = None,
    timeout: float = 60,
    **fields: Any,
) -> httpx.Response:
    """A non-streamed invoke of `deployment` with `inputs` (`INPUTS` unless given) and any other
    body `fields` (`variant`, `user`, `metadata`, ...) that are not None, through `target`: an
    open client, or a server called with its admin key. `expect`: the status (or statuses) the
    answer must have."""
    body = {"deployment": deployment, "inputs": INPUTS if inputs is None else inputs}
    body |= {name: value for name, value in fields.items() if value is not None}
    if isinstance(target, httpx.Client):
        response = target.post("/v1/prompt/invoke", json=body)
    else:
        headers = {"Authorization": f"Bearer {target.admin_key}"}
        with httpx.Client(base_url=target.url, headers=headers, timeout=timeout) as client:
            response = client.post("/v1/prompt/invoke", json=body)
    if expect is not None:
        assert response.status_code in ((expect,) if isinstance(expect, int) else expect), response.text
    return response


def timed_invoke(
    target: Server | httpx.Client, deployment: str, inputs: dict[str, Any]
) -> tuple[httpx.Response, float]:
    """`invoke`, and how many seconds it took."""
    started = time.monotonic()
    response = invoke(target, deployment, inputs)
    return response, time.monotonic() - started
