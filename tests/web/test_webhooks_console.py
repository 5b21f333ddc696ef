"""The Webhooks page in a real browser: add an endpoint (its secret shown once), ping it, read
the delivery log with each try's status, refuse a bad URL, delete it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import shot
from tests.support.webhook_receiver import Receiver, receiver
from tests.test_webhooks import check_signature
from tests.web.conftest import Console


@pytest.fixture
def hook(console: Console) -> Iterator[Receiver]:
    """A receiver on loopback, which the console's server may reach for this test only."""
    hooks = console.live.services.webhooks
    hooks.policy.allow_private, delays = True, hooks.dispatcher.delays
    hooks.dispatcher.delays = (0.05, 0.1)
    try:
        with receiver() as started:
            yield started
    finally:
        hooks.policy.allow_private, hooks.dispatcher.delays = False, delays


async def test_an_owner_adds_pings_reads_the_log_and_deletes_an_endpoint(
    signed_in_page: Any, console: Console, hook: Receiver
) -> None:
    page = signed_in_page
    await page.goto("/webhooks")
    await page.get_by_label("URL").fill("https://169.254.169.254/latest")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Add endpoint").click()
    assert "cloud metadata address" in await page.locator(".flash-error").inner_text()

    await page.get_by_label("URL").fill(hook.url)
    await page.get_by_label("Description").fill("release notifier")
    await page.get_by_label("deployment.created").check()
    async with page.expect_navigation():
        await page.get_by_role("button", name="Add endpoint").click()
    secret = (await page.locator("#revealed").inner_text()).strip()
    assert secret.startswith("whsec_")
    await shot(page, "webhooks-endpoint-added")
    await page.reload()
    assert secret not in await page.content()  # shown once

    async with page.expect_navigation():
        await page.get_by_role("button", name="Send a test ping").click()
    assert "Ping sent: delivered (200)" in await page.locator(".flash-ok").inner_text()
    (ping,) = await asyncio.to_thread(hook.wait_for, 1)
    assert check_signature(ping, secret)["type"] == "ping"

    hook.statuses = [500]
    with _client(console) as client:
        made = client.post("/api/deployments", json={"name": "notified", "prompt": "summarize"})
        assert made.status_code == 201, made.text
    await asyncio.to_thread(hook.wait_for, 3)
    await asyncio.sleep(0.3)
    await page.reload()
    log = page.locator("#deliveries")
    row = log.locator("tr", has_text="deployment.created")
    await row.locator(".badge-ok", has_text="delivered").wait_for()
    tries = await row.locator(".tries li").all_inner_texts()
    assert tries[0].startswith("#1") and "500" in tries[0] and tries[1].startswith("#2") and "200" in tries[1]
    assert "ping" in await log.inner_text()
    await shot(page, "webhooks-delivery-log")

    await page.goto("/webhooks")
    assert "release notifier" in await page.locator("#endpoints").inner_text()
    await shot(page, "webhooks-list")
    await page.get_by_role("link", name=hook.url).click()
    page.once("dialog", lambda dialog: dialog.accept())
    async with page.expect_navigation():
        await page.get_by_role("button", name="Delete").click()
    assert page.url.endswith("/webhooks")
    assert hook.url not in await page.locator("#endpoints").inner_text()
    with _client(console) as client:
        client.delete("/api/deployments/notified")


def _client(console: Console) -> Any:
    import httpx

    return httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.admin_key}"})
