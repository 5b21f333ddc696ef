"""Workspaces in a real browser: an instance administrator creates one (its admin key shown once)
and becomes its owner; the header's switcher moves the session between memberships; archiving
refuses the workspace's key and takes it out of the switcher; restoring brings it back. A member
invited into a second workspace joins with the one password they have, and a password change
holds for both. A plain owner has no Workspaces page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from promptdeck.store.console_members import MemberStore
from promptdeck.store.workspaces import WorkspaceStore
from tests.conftest import make_settings, seed
from tests.support.browser import DESKTOP, shot
from tests.support.live_server import start_server
from tests.web.conftest import PASSWORD, Console, sign_in


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Console]:
    """A console of its own: workspaces made here must not show up in other tests' lists."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}", tmp_path)
    workspace_id, key = seed(settings)
    live = start_server(settings)
    yield Console(live, key, workspace_id)
    live.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Any, instance: Console) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=DESKTOP, base_url=instance.url)
    opened = await context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    await context.close()


def instance_admin(console: Console) -> str:
    email = console.add_member("owner")

    async def promote() -> None:
        await WorkspaceStore(
            console.live.services.db, console.live.services.changes
        ).make_instance_admin_member(email)

    console.live.call(promote)
    return email


async def switch_to(page: Any, name: str) -> None:
    await page.get_by_label("Workspace", exact=True).select_option(label=name)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Switch").click()


async def test_create_switch_archive_restore(page: Any, instance: Console) -> None:
    admin = instance_admin(instance)
    await sign_in(page, admin, next_path="/prompts")
    assert await page.get_by_role("button", name="Switch").count() == 0  # one workspace: no switcher
    await page.get_by_role("link", name="Workspaces").click()
    await page.get_by_label("Name", exact=True).fill("Team Search")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Create workspace").click()
    key = (await page.locator("#revealed").inner_text()).strip()
    assert key.startswith("pd_")
    assert "you are its owner" in await page.locator(".flash-ok").inner_text()
    await shot(page, "workspaces-created")
    await page.reload()
    assert key not in await page.content()  # shown once
    async with httpx.AsyncClient(base_url=instance.url, headers={"Authorization": f"Bearer {key}"}) as team:
        assert (await team.get("/api/workspace")).json()["name"] == "Team Search"

        await switch_to(page, "Team Search")
        await page.goto("/prompts")
        assert "summarize" not in await page.locator("main").inner_text()  # the example is the first's
        assert (
            await page.get_by_label("Workspace", exact=True).input_value()
            == (await team.get("/api/workspace")).json()["id"]
        )
        await page.get_by_label("Workspace", exact=True).focus()
        await shot(page, "workspaces-switcher")

        await switch_to(page, "default")
        await page.goto("/prompts")
        assert "summarize" in await page.locator("main").inner_text()
        await page.goto("/workspaces")
        row = page.locator("tr", has_text="Team Search")
        await row.get_by_label("New name for Team Search").fill("Search")
        async with page.expect_navigation():
            await row.get_by_role("button", name="Rename").click()
        row = page.locator("tr", has_text="Search")
        async with page.expect_navigation():
            await row.get_by_role("button", name="Archive").click()
        assert "archived" in await page.locator(".flash-ok").inner_text()
        assert (await team.get("/api/workspace")).status_code == 401  # its key is refused at once
        assert await page.get_by_role("button", name="Switch").count() == 0  # nothing to switch to
        current = page.locator("tr", has_text="default")
        assert await current.get_by_role("button", name="Archive").count() == 0  # the member's own
        await shot(page, "workspaces-archived")

        async with page.expect_navigation():
            await page.locator("tr", has_text="Search").get_by_role("button", name="Restore").click()
        assert (await team.get("/api/workspace")).status_code == 200
        assert await page.get_by_role("button", name="Switch").count() == 1


async def test_one_person_in_two_workspaces(page: Any, instance: Console) -> None:
    """Invited into a second workspace, a member joins with their password; a change of it holds
    for both; signing in picks the oldest active membership; a plain owner has no Workspaces page."""
    email = instance.add_member("owner")
    services = instance.live.services

    async def second() -> str:
        created = await services.workspaces.create("Second")
        invite = await MemberStore(services.db).invite(created.id, email, "viewer", "tests")
        return invite[1]

    token = instance.live.call(second)
    await page.goto(f"/invite/{token}")
    await page.get_by_label("Your name").fill("Pat")
    await page.get_by_label("Password", exact=True).fill("not the password at all")
    await page.get_by_label("Password again").fill("not the password at all")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Join").click()
    assert "enter that account's password" in await page.locator(".flash-error").inner_text()
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Password again").fill(PASSWORD)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Join").click()
    assert await page.get_by_label("Workspace", exact=True).count() == 1
    assert "viewer" in await page.locator(".account").inner_text()

    assert (await page.goto("/workspaces")).status == 403  # an owner, but not the instance's
    assert await page.get_by_role("link", name="Workspaces").count() == 0

    new_password = "a brand new passphrase"
    await page.goto("/change-password")
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password", exact=True).fill(new_password)
    await page.get_by_label("New password again").fill(new_password)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Save password").click()
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign out").click()

    await sign_in(page, email, new_password, next_path="/prompts")
    assert "owner" in await page.locator(".account").inner_text()  # the oldest membership
    await switch_to(page, "Second")
    assert "viewer" in await page.locator(".account").inner_text()
