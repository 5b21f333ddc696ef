"""A run's trace id on its console page, in a real browser: the trace a caller's `traceparent`
named, so the run can be found from the caller's own trace and back."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.browser import shot
from tests.support.fake_openai import INPUTS
from tests.web.conftest import Console

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


async def test_a_run_page_shows_the_trace_it_joined(upstream_page: Any, upstream_console: Console) -> None:
    page = upstream_page
    async with httpx.AsyncClient(
        base_url=upstream_console.url, headers={"Authorization": f"Bearer {upstream_console.admin_key}"}
    ) as client:
        joined = await client.post(
            "/v1/prompt/invoke",
            json={"deployment": "fast", "inputs": INPUTS},
            headers={"traceparent": TRACEPARENT},
        )
        alone = await client.post("/v1/prompt/invoke", json={"deployment": "fast", "inputs": INPUTS})
    assert joined.status_code == alone.status_code == 200, joined.text

    await page.goto(f"/logs/{joined.json()['request_id']}")
    facts = page.locator("section", has=page.get_by_role("heading", name="Run", exact=True))
    assert await facts.locator("#trace-id").inner_text() == TRACE_ID
    assert "Trace id " + TRACE_ID in " ".join((await facts.inner_text()).split())
    await shot(page, "run-detail-trace-id")

    await page.goto(f"/logs/{alone.json()['request_id']}")  # no traceparent, no tracing: none
    assert await page.locator("#trace-id").count() == 0
    assert "Trace id none" in " ".join((await facts.inner_text()).split())
