"""Settings in a real browser: API keys, members and invitations, read-only roles."""

from __future__ import annotations

import re
from typing import Any

import httpx

from promptdeck.web.console import ROUTERS
from tests.support.browser import shot
from tests.web.conftest import PASSWORD, Console


async def test_an_owner_creates_an_api_key_sees_it_once_and_revokes_it(
    signed_in_page: Any, console: Console
) -> None:
    page = signed_in_page
    await page.get_by_label("Name").fill("ui key")
    await page.get_by_label("admin").check()
    async with page.expect_navigation():
        await page.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#revealed").inner_text()).strip()
    assert secret.startswith("pd_")
    await shot(page, "settings-key-created")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (await page.request.get("/api/prompts", headers=bearer)).status == 200  # the key works

    await page.reload()
    assert secret not in await page.content()  # shown once
    row = page.locator("tr", has_text="ui key")
    page.once("dialog", lambda dialog: dialog.accept())
    async with page.expect_navigation():
        await row.get_by_role("button", name="Revoke").click()
    assert "was revoked" in await page.locator(".flash-ok").inner_text()
    assert "revoked" in await page.locator("tr", has_text="ui key").inner_text()
    assert (await page.request.get("/api/prompts", headers=bearer)).status == 401


async def test_an_invited_member_joins_and_a_viewer_sees_settings_read_only(
    signed_in_page: Any, new_page: Any, console: Console, browser: Any
) -> None:
    page = signed_in_page
    await shot(page, "settings")
    await page.get_by_label("Email", exact=True).fill("invited.viewer@example.com")
    await page.locator("select[name=invite_role]").select_option("viewer")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Invite").click()
    link = (await page.locator("#revealed").inner_text()).strip()
    assert "/invite/" in link

    context = await browser.new_context(base_url=console.url)
    guest = await context.new_page()
    await guest.goto(link)
    assert "invited.viewer@example.com" in await guest.content()
    await guest.get_by_label("Your name").fill("Vera Viewer")
    await guest.get_by_label("Password", exact=True).fill("viewer password 1")
    await guest.get_by_label("Password again").fill("viewer password 1")
    async with guest.expect_navigation():
        await guest.get_by_role("button", name="Join").click()
    await guest.goto("/settings")
    assert "invited.viewer@example.com" in await guest.locator(".account").inner_text()
    assert await guest.locator("main form").count() == 0  # read-only: no forms at all
    assert "Only owners see and manage API keys" in await guest.content()
    await shot(guest, "settings-viewer")

    # a viewer's session reads the admin API but cannot change anything
    assert (await guest.evaluate("fetch('/api/prompts').then(r => r.status)")) == 200
    refused = await guest.evaluate(
        """async () => {
            const { api } = await import('/static/console.js');
            try { await api('POST', '/api/prompts', { slug: 'nope' }); return 'accepted'; }
            catch (error) { return error.status + ' ' + error.message; }
        }"""
    )
    assert refused.startswith("403") and "needs the editor role; you are signed in as viewer" in refused

    await guest.goto(link)  # the link works once
    assert "already accepted" in await guest.content()
    await context.close()


async def test_an_owner_who_demotes_themselves_sees_settings_read_only(signed_in_page: Any) -> None:
    # (other tests' owners share this workspace; the last-owner rule is in tests/store/)
    page = signed_in_page
    me = page.locator("tr", has_text="(you)")
    await me.get_by_label("Role of").select_option("viewer")
    async with page.expect_navigation():
        await me.get_by_role("button", name="Change").click()
    assert "is now viewer" in await page.locator(".flash-ok").inner_text()
    assert await page.locator("main form").count() == 0
    assert "viewer" in await page.locator(".account").inner_text()


def test_a_forged_form_without_its_token_is_refused_and_changes_nothing(console: Console) -> None:
    with console.session_client(console.add_member("owner")) as (client, _):
        forged = client.post("/settings/keys", data={"key_name": "forged", "key_scopes": "admin"})
        assert forged.status_code == 403
        assert "security token (CSRF)" in forged.text
        assert 'value="forged"' in forged.text  # what was typed is still in the form
        assert "forged" not in client.get("/api/keys").text.replace('value="forged"', "")
        # every console route that takes a POST refuses one without the token (new screens too)
        posts = [r.path for router in ROUTERS for r in router.routes if "POST" in getattr(r, "methods", ())]
        assert "/settings/keys" in posts and "/sign-in" in posts
        for path in posts:
            answer = client.post(re.sub(r"{[^}]+}", "unknown", path), data={"role": "viewer"})
            expected = 404 if path.startswith("/invite/") else 403  # an unknown invitation is said first
            assert answer.status_code == expected, (path, answer.status_code)
        assert client.get("/settings").status_code == 200  # still signed in


def test_the_session_cookie_opens_the_admin_api_with_the_csrf_header(console: Console) -> None:
    with console.session_client(console.add_member("editor")) as (client, csrf):
        assert [p["slug"] for p in client.get("/api/prompts").json()["data"]] == ["summarize"]
        body = {"slug": "from-console", "name": "From the console"}
        refused = client.post("/api/prompts", json=body)
        assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]["message"]
        created = client.post("/api/prompts", json=body, headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201, created.text
        version = client.post(
            "/api/prompts/from-console/versions",
            json={"model": "local/smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-CSRF-Token": csrf},
        )
        assert version.status_code == 201 and version.json()["author"].startswith("editor")
        keys = client.post("/api/keys", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
        assert keys.status_code == 403 and "needs the owner role" in keys.json()["error"]["message"]

    expired = httpx.post(
        console.url + "/api/prompts", json={"slug": "x"}, cookies={"promptdeck_session": "no-such-session"}
    )
    assert expired.status_code == 401 and "session has expired" in expired.json()["error"]["message"]


def test_a_wrong_password_over_http_is_401_with_the_form_again(console: Console) -> None:
    email = console.add_member("viewer")
    with httpx.Client(base_url=console.url) as client:
        client.get("/sign-in")
        token = client.cookies["promptdeck_form_csrf"]
        wrong = {"email": email, "password": PASSWORD + "x", "csrf_token": token}
        answer = client.post("/sign-in", data=wrong)
        assert answer.status_code == 401 and "do not match" in answer.text
        no_token = client.post("/sign-in", data={"email": email, "password": PASSWORD})
        assert no_token.status_code == 403 and "security token" in no_token.text and email in no_token.text


async def test_a_signed_in_member_visiting_sign_in_is_sent_on(signed_in_page: Any) -> None:
    await signed_in_page.goto("/sign-in?next=/settings")
    assert signed_in_page.url.endswith("/settings")
    await signed_in_page.goto("/sign-in?next=//evil.example/")  # never off this server
    assert signed_in_page.url.endswith("/prompts")  # "/" -> /prompts (a screen still to come)
