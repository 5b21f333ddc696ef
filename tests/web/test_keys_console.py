"""API keys on the Settings page in a real browser: create a key narrowed to one deployment
with an expiry, see its deployments and expiry listed, rotate it (the new secret shown once, the
old key still working in its grace period), and find each change in the audit log."""

from __future__ import annotations

import re
from typing import Any

from promptdeck.store.audit_log import AuditFilters
from tests.support.browser import shot
from tests.web.conftest import Console


def audit_actions(console: Console, target_id: str) -> list[str]:
    services = console.live.services
    page = console.live.call(
        lambda: services.audit.page(console.workspace_id, AuditFilters(target_id=target_id))
    )
    return [event["action"] for event in page["data"]]


async def test_an_owner_creates_a_narrowed_expiring_key_and_rotates_it(
    signed_in_page: Any, console: Console
) -> None:
    page = signed_in_page
    form = page.get_by_role("form", name="Create an API key")
    await form.get_by_label("Name").fill("reporting bot")
    await form.get_by_label("Deployments").select_option(["summarize"])
    await form.get_by_label("Expires in (days)").fill("30")
    await shot(page, "settings-key-form")
    async with page.expect_navigation():
        await form.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#revealed").inner_text()).strip()
    assert secret.startswith("pd_")
    bearer = {"Authorization": f"Bearer {secret}"}
    models = await (await page.request.get("/v1/models", headers=bearer)).json()
    assert [m["id"] for m in models["data"]] == ["summarize"]

    await page.reload()
    row = page.locator("#keys tr", has_text="reporting bot")
    text = await row.inner_text()
    assert "summarize" in text and "in 30 days" in text and "active" in text
    key_id = (await row.locator("form[action$='/rotate']").get_attribute("action")).split("/")[3]

    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_label("How long the old key").select_option("3600")
    async with page.expect_navigation():
        await row.get_by_role("button", name="Rotate").click()
    assert "rotated" in await page.locator(".flash-ok").inner_text()
    new_secret = (await page.locator("#revealed").inner_text()).strip()
    assert new_secret.startswith("pd_") and new_secret != secret
    await shot(page, "settings-key-rotated")
    new_bearer = {"Authorization": f"Bearer {new_secret}"}
    assert (await page.request.get("/v1/models", headers=new_bearer)).status == 200
    assert (await page.request.get("/v1/models", headers=bearer)).status == 200  # grace period

    await page.reload()
    assert new_secret not in await page.content()  # shown once
    rows = page.locator("#keys tr", has_text="reporting bot")
    assert await rows.count() == 2
    old_row = rows.filter(has_text="rotated")
    assert re.search(r"\tin (59 min|60 min|1 h)\t", await old_row.inner_text())  # its grace period
    assert await old_row.get_by_role("button", name="Rotate").count() == 0  # rotated once is enough
    assert "in 30 days" in await rows.filter(has_text="replaces").inner_text()  # its own 30 days
    await page.locator("#keys").scroll_into_view_if_needed()
    await shot(page, "settings-keys-listed")
    assert audit_actions(console, key_id) == ["key.rotated", "key.created"]


async def test_a_key_form_with_a_bad_expiry_keeps_what_was_typed(signed_in_page: Any) -> None:
    page = signed_in_page
    form = page.get_by_role("form", name="Create an API key")
    await form.get_by_label("Name").fill("typo")
    await form.get_by_label("Expires in (days)").evaluate("el => { el.min = ''; el.value = '-3'; }")
    async with page.expect_navigation():
        await form.get_by_role("button", name="Create key").click()
    assert "expires_in_days" in await page.locator(".flash-error").inner_text()
    assert (
        await page.get_by_role("form", name="Create an API key").get_by_label("Name").input_value() == "typo"
    )
