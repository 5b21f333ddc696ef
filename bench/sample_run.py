"""The run the in-process cost benchmarks time (`metrics_cost.py`, `trace_cost.py`): one made as
gateway_overhead.py's calls make them, so both measure the same record."""

from __future__ import annotations

from datetime import UTC, datetime

from promptdeck.domain.runs import RunRecord


def a_run() -> RunRecord:
    """A non-streamed run answered on its first attempt, as gateway_overhead.py makes them."""
    return RunRecord(
        workspace_id="w",
        dialect="fetchhive",
        deployment="summarize",
        streamed=False,
        created_at=datetime.now(UTC),
        deployment_id="d1",
        version_id="v1",
        variant="default",
        version_number=3,
        model="openai/gpt-4o-mini",
        provider="openai",
        input_tokens=120,
        output_tokens=40,
        cost=0.000042,
        duration_ms=231.5,
        ttft_ms=180.2,
        stop_reason="stop",
        attempts=[
            {
                "provider": "openai",
                "model": "openai/gpt-4o-mini",
                "fallback": 0,
                "attempt": 1,
                "status": "success",
                "error_code": None,
                "error": None,
                "duration_ms": 229.1,
                "began_ms": 1.2,
            }
        ],
    )
