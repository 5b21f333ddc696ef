"""The Limits & budgets page in a real browser: an owner sets a rate limit and budgets (one
refused), reads each budget's spend bar over runs the server wrote, changes and deletes them,
every change audited; a viewer reads the page without its forms and cannot post to it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from promptdeck.domain.quotas import CallSubjects
from tests.support.browser import shot
from tests.support.run_records import usage_run
from tests.web.conftest import Console, sign_in


def write_run(console: Console, cost: float, end_user: str) -> None:
    record = usage_run(
        console.workspace_id, datetime.now(UTC), cost=cost, deployment="summarize", end_user=end_user
    )
    services = console.live.services

    async def put() -> None:
        await services.writer.put(record)
        await services.writer.flush()

    console.live.call(put)


def audit_actions(console: Console, prefix: str) -> list[dict[str, Any]]:
    with httpx.Client(
        base_url=console.url, headers={"Authorization": f"Bearer {console.admin_key}"}
    ) as client:
        events = client.get("/api/audit", params={"limit": 500}).json()["data"]
    return [e for e in events if e["action"].startswith(prefix)]


async def test_an_owner_sets_reads_changes_and_deletes_limits_and_budgets(
    signed_in_page: Any, console: Console
) -> None:
    page = signed_in_page
    audited_before = len(audit_actions(console, "rate_limit.")) + len(audit_actions(console, "budget."))
    write_run(console, 3.0, "ann")
    write_run(console, 1.0, "bob")
    await page.goto("/")
    await page.get_by_role("link", name="Limits & budgets").click()
    await page.wait_for_url("**/limits")
    assert "No budgets" in await page.locator("#budgets").inner_text()

    limit_form = page.locator("#limit-form")
    await limit_form.get_by_label("Applies to").select_option("end_user")
    await limit_form.get_by_label("Requests per minute").fill("30")
    async with page.expect_navigation():
        await limit_form.get_by_role("button", name="Set limit").click()
    assert "Rate limit set for each end user." in await page.locator(".flash-ok").inner_text()

    budget_form = page.locator("#budget-form")
    await budget_form.get_by_label("Applies to").select_option("workspace")
    await budget_form.get_by_label("Subject").fill("someone")
    await budget_form.get_by_label("Amount (USD)").fill("10")
    async with page.expect_navigation():
        await budget_form.get_by_role("button", name="Set budget").click()
    assert "has no subject" in await page.locator(".flash-error").inner_text()
    assert await page.locator("#budget-form").get_by_label("Subject").input_value() == "someone"  # kept

    budget_form = page.locator("#budget-form")
    await budget_form.get_by_label("Subject").fill("")
    await budget_form.get_by_label("Period").select_option("day")
    async with page.expect_navigation():
        await budget_form.get_by_role("button", name="Set budget").click()
    assert "Budget set: $10 per day for the workspace." in await page.locator(".flash-ok").inner_text()
    budget_form = page.locator("#budget-form")
    await budget_form.get_by_label("Applies to").select_option("end_user")
    await budget_form.get_by_label("Amount (USD)").fill("5")
    async with page.expect_navigation():
        await budget_form.get_by_role("button", name="Set budget").click()

    budgets = page.locator("#budgets tbody tr")
    assert await budgets.count() == 2
    day = await budgets.nth(0).inner_text()
    assert "the workspace" in day and "$10.00" in day and "$4.00" in day and "$6.00" in day
    each = await budgets.nth(1).inner_text()
    assert "each end user" in each and "nearest: ann" in each and "$3.00" in each and "$2.00" in each
    bar = budgets.nth(0).locator("svg.spend-bar")
    assert "$4.00 spent" in (await bar.get_attribute("aria-label") or "")
    assert await bar.locator("rect").nth(1).get_attribute("width") == "40.00"
    assert "$4.00 today" in await page.locator("#spend").inner_text()

    # A call in flight holds its worst case: the bar's second segment, until it settles.
    governor = console.live.services.engine.governor
    subjects = CallSubjects(console.workspace_id, None, "summarize", None)

    async def admit() -> Any:
        return await governor.admit(subjects, lambda: 1.5)

    hold = console.live.call(admit)
    await page.reload()
    day = await page.locator("#budgets tbody tr").nth(0).inner_text()
    assert "$1.50" in day and "$4.50" in day
    assert await bar.locator("rect").nth(2).get_attribute("width") == "15.00"
    await shot(page, "limits-and-budgets")

    async def settle() -> None:
        await governor.settle(hold, 0.0, 0)

    console.live.call(settle)

    await budgets.nth(0).get_by_role("link", name="Change").click()
    await page.wait_for_url("**change_budget=*")
    budget_form = page.locator("#budget-form")
    assert await budget_form.get_by_label("Amount (USD)").input_value() == "10.0"
    assert await budget_form.get_by_label("Period").input_value() == "day"
    await budget_form.get_by_label("Amount (USD)").fill("4")
    async with page.expect_navigation():
        await budget_form.get_by_role("button", name="Set budget").click()
    day = await page.locator("#budgets tbody tr").nth(0).inner_text()
    assert "$4.00" in day and "$0.00" in day  # nothing remains
    assert await page.locator("#budgets tbody tr").count() == 2

    page.once("dialog", lambda dialog: dialog.accept())
    async with page.expect_navigation():
        await page.locator("#limits tbody tr").nth(0).get_by_role("button", name="Delete").click()
    assert "Rate limit for each end user deleted." in await page.locator(".flash-ok").inner_text()
    assert "No rate limits" in await page.locator("#limits").inner_text()

    limits = audit_actions(console, "rate_limit.")
    budget_events = audit_actions(console, "budget.")
    assert len(limits) + len(budget_events) - audited_before == 5
    assert [e["action"] for e in limits[:2]] == ["rate_limit.deleted", "rate_limit.set"]
    changed = budget_events[0]
    assert changed["action"] == "budget.set" and changed["actor"].startswith("owner")
    assert changed["before"]["amount_usd"] == 10.0 and changed["after"]["amount_usd"] == 4.0


async def test_a_viewer_reads_without_forms(new_page: Any, console: Console) -> None:
    page = new_page
    viewer = console.add_member("viewer")
    await sign_in(page, viewer, next_path="/limits")
    assert page.url.endswith("/limits")
    assert await page.locator("#limit-form").count() == 0 and await page.locator("#budget-form").count() == 0
    assert "Only owners set and change" in await page.locator("#limits").inner_text()
    with console.session_client(viewer) as (client, csrf):
        refused = client.post(
            "/limits/rate", data={"csrf_token": csrf, "subject_kind": "workspace", "requests_per_minute": "1"}
        )
        assert refused.status_code == 403
        api = client.put(
            "/api/limits",
            json={"subject_kind": "workspace", "requests_per_minute": 1},
            headers={"X-CSRF-Token": csrf},
        )
        assert api.status_code == 403 and "owner" in api.json()["error"]["message"]
        assert client.get("/api/budgets").status_code == 200
