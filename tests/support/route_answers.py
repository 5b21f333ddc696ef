"""Checks of what an answer says, for the sweeps over every route (test_workspace_isolation.py,
test_scope_sweep.py): whether it is a 404 or a 403 in its dialect's error shape, and whether it
shows any of a set of markers (an export archive unpacked first).
"""

from __future__ import annotations

import gzip
import re
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from promptdeck.app import ERROR_SHAPES
from promptdeck.surfaces import admin, openai_wire, vellum
from promptdeck.surfaces.error_shapes import AdminError, FetchHiveError, OpenAIError, VellumError

PLACEHOLDER = re.compile(r"\{(\w+)\}")  # "{run_id}" in a probe template: the value named run_id


SHAPES: dict[Any, type[BaseModel]] = {
    admin.render_error: AdminError,
    openai_wire.render_error: OpenAIError,
    vellum.render_error: VellumError,
}


def fill(template: Any, values: dict[str, str]) -> Any:
    """`template` with each "{name}" placeholder replaced by the value of that name."""
    if isinstance(template, str):
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


def shape_of(path: str) -> type[BaseModel]:
    render = next((r for prefix, r in ERROR_SHAPES if path.startswith(prefix)), None)
    return SHAPES.get(render, FetchHiveError)


def not_found_problem(label: str, path: str, response: httpx.Response) -> str | None:
    """Why `response` is not a 404 in the error shape of `path`'s dialect (None: it is)."""
    if response.status_code != 404:
        return f"{label}: {response.status_code} (want 404): {response.text[:300]}"
    try:
        shape_of(path).model_validate_json(response.content)
    except ValidationError as exc:
        return f"{label}: a 404 not in the {shape_of(path).__name__} shape: {exc}"
    return None


def body_text(response: httpx.Response) -> str:
    content = response.content
    if content[:2] == b"\x1f\x8b":  # an export archive
        content = gzip.decompress(content)
    return content.decode("utf-8", "replace")


def leaked(response: httpx.Response, markers: set[str]) -> list[str]:
    text = body_text(response)
    return sorted(m for m in markers if m in text)


def send(client: httpx.Client, key: str, probe: dict[str, Any] | None = None) -> httpx.Response:
    """`key` is "METHOD /path"; `probe` the request's other arguments (json, params, ...)."""
    method, path = key.split(" ", 1)
    return client.request(method, path, **(probe or {}))


def usage_counts_runs(usage: Any) -> bool:
    """Whether a usage report counts any run (B has made none)."""
    if isinstance(usage, dict):
        return any(
            (k in ("runs", "requests", "calls") and isinstance(v, int | float) and v > 0)
            or usage_counts_runs(v)
            for k, v in usage.items()
        )
    if isinstance(usage, list):
        return any(usage_counts_runs(v) for v in usage)
    return False


def forbidden_problem(label: str, response: httpx.Response) -> str | None:
    """Why `response` is not a 403 in the admin error shape, code `forbidden` (None: it is)."""
    if response.status_code != 403:
        return f"{label}: {response.status_code} (want 403): {response.text[:200]}"
    shape = AdminError.model_validate_json(response.content)
    return None if shape.error.code == "forbidden" else f"{label}: code {shape.error.code!r}"
