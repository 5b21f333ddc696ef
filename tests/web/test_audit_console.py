"""The Audit log page in a real browser: an owner's settings changes (a provider credential,
members invited, re-roled and removed, run retention) are listed with who, from where, what and
a before/after diff, never the credential's secret; the filter narrows them; the export links
download them; an editor neither sees the link nor opens the page."""

from __future__ import annotations

import csv
import io
from typing import Any

from promptdeck.store.console_members import MemberStore
from tests.support.browser import shot
from tests.web.conftest import Console, sign_in

SECRET = "sk-console-audit-secret-5e6f7a8b"


def change_settings(console: Console, owner: str) -> str:
    """Settings changes through the console's own forms, as `owner`; returns the re-roled member."""
    other = console.add_member("editor")
    members = MemberStore(console.live.services.db)
    target = next(
        m for m in console.live.call(lambda: members.list(console.workspace_id)) if m.email == other
    )
    provider = console.live.services.providers.credential_names[0]
    with console.session_client(owner) as (client, csrf):
        for path, form in (
            (f"/settings/providers/{provider}", {"api_key": SECRET, "base_url": "http://127.0.0.1:9/v1"}),
            (f"/settings/providers/{provider}/delete", {}),
            ("/settings/members/invite", {"invite_email": "new.hire@example.com", "invite_role": "viewer"}),
            (f"/settings/members/{target.id}/role", {"role": "viewer"}),
            (f"/settings/members/{target.id}/remove", {}),
            ("/settings/retention", {"retention_days": "14"}),
            ("/settings/retention", {"retention_days": ""}),
        ):
            answer = client.post(path, data=form | {"csrf_token": csrf})
            assert answer.status_code == 303, (path, answer.status_code, answer.text[:300])
    return other


async def test_an_owner_reads_filters_and_exports_the_audit_log(new_page: Any, console: Console) -> None:
    owner = console.add_member("owner")
    other = change_settings(console, owner)
    page = new_page
    await sign_in(page, owner, next_path=f"/audit?actor={owner}")
    assert "/audit?actor=" in page.url, page.url
    await page.get_by_role("link", name="Audit log").wait_for()  # in the header, for owners

    table = page.locator(".audit-table tbody")
    actions = await table.locator("td:nth-child(4)").all_inner_texts()
    assert actions == [
        "retention.set",
        "retention.set",
        "member.removed",
        "member.role_changed",
        "member.invited",
        "credential.deleted",
        "credential.stored",
    ]
    text = await table.inner_text()
    assert "127.0.0.1" in text and owner in text and "python-httpx" in text
    assert SECRET not in await page.content() and SECRET[-8:] not in await page.content()
    role_row = table.locator("tr", has_text="member.role_changed")
    assert other in await role_row.inner_text()
    assert await role_row.locator(".diff-del").inner_text() == '-   "role": "editor"'
    assert await role_row.locator(".diff-add").inner_text() == '+   "role": "viewer"'
    await shot(page, "audit-log")

    await page.get_by_label("Action").fill("member.")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Filter").click()
    actions = await table.locator("td:nth-child(4)").all_inner_texts()
    assert actions == ["member.removed", "member.role_changed", "member.invited"]
    await shot(page, "audit-log-filtered")

    href = await page.get_by_role("link", name="CSV").get_attribute("href")
    assert href is not None and "action=member." in href and "format=csv" in href
    exported = await page.request.get(href)
    assert exported.status == 200
    rows = list(csv.DictReader(io.StringIO(await exported.text())))
    assert [r["action"] for r in rows] == actions and {r["address"] for r in rows} == {"127.0.0.1"}

    await page.get_by_label("Since").fill("not a time")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Filter").click()
    assert "since" in await page.locator(".flash-error").inner_text()


async def test_an_editor_has_no_audit_log(new_page: Any, console: Console) -> None:
    page = new_page
    await sign_in(page, console.add_member("editor"))
    assert await page.get_by_role("link", name="Audit log").count() == 0
    answer = await page.goto("/audit")
    assert answer is not None and answer.status == 403
    refused = await page.request.get("/api/audit")
    assert refused.status == 403 and "owner role" in await refused.text()
