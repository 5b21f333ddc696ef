"""Runs made by hand for the usage tests, as the engine would hand them to the run writer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from promptdeck.domain.runs import RunRecord


def usage_run(workspace_id: str, created_at: datetime, **fields: Any) -> RunRecord:
    """A 100 ms success of deployment `alpha` (variant default, v1, openai/a) with no tokens,
    so a test names only the fields its sums depend on."""
    values: dict[str, Any] = {
        "workspace_id": workspace_id,
        "dialect": "fetchhive",
        "deployment": "alpha",
        "streamed": False,
        "variant": "default",
        "version_number": 1,
        "model": "openai/a",
        "provider": "openai",
        "duration_ms": 100.0,
        "created_at": created_at,
    }
    return RunRecord(**(values | fields))
