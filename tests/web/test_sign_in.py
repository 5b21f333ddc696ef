"""Signing in and out of the console in a real browser."""

from __future__ import annotations

from typing import Any

from tests.support.browser import shot
from tests.web.conftest import PASSWORD, Console, sign_in


async def test_wrong_password_is_an_inline_error_and_the_email_is_kept(
    new_page: Any, console: Console
) -> None:
    email = console.add_member("editor")
    await sign_in(new_page, email, "not the password")
    assert "/sign-in" in new_page.url
    alert = await new_page.get_by_role("alert").inner_text()
    assert "do not match" in alert and "4 more failed attempts" in alert
    assert await new_page.get_by_label("Email").input_value() == email
    await shot(new_page, "sign-in-error")


async def test_five_failures_pause_this_address_for_that_email(new_page: Any, console: Console) -> None:
    """Only this address pauses: the member still signs in from their own
    (tests/test_hostile_input_bounds.py signs in from two addresses)."""
    email = console.add_member("viewer")
    for _ in range(5):
        await sign_in(new_page, email, "wrong password!")
    assert "try again in 1 minute" in await new_page.get_by_role("alert").inner_text()
    await sign_in(new_page, email, PASSWORD)  # not even looked at until the pause is over
    assert "Too many failed sign-ins" in await new_page.get_by_role("alert").inner_text()
    assert "/sign-in" in new_page.url


async def test_sign_in_lands_on_the_page_asked_for_and_sign_out_ends_the_session(
    new_page: Any, console: Console
) -> None:
    await new_page.goto("/settings")
    assert "/sign-in?next=/settings" in new_page.url
    await shot(new_page, "sign-in")
    email = console.add_member("owner")
    await new_page.get_by_label("Email").fill(email)
    await new_page.get_by_label("Password").fill(PASSWORD)
    await new_page.get_by_role("button", name="Sign in").click()
    await new_page.wait_for_url("**/settings")
    assert email in await new_page.locator(".account").inner_text()

    await new_page.get_by_role("button", name="Sign out").click()
    await new_page.wait_for_url("**/sign-in")
    await new_page.goto("/settings")
    assert "/sign-in" in new_page.url  # the old cookie no longer opens anything


async def test_first_sign_in_with_a_one_time_password_forces_a_change(
    new_page: Any, console: Console
) -> None:
    email = console.add_member("owner", must_change_password=True)
    await sign_in(new_page, email)
    assert new_page.url.endswith("/change-password")
    await new_page.goto("/settings")
    assert new_page.url.endswith("/change-password")  # nothing else until it is changed
    await shot(new_page, "change-password")

    # past the browser's own check, to see the server's
    await new_page.evaluate(
        "document.querySelectorAll('[minlength]').forEach(e => e.removeAttribute('minlength'))"
    )
    await new_page.get_by_label("New password", exact=True).fill("short")
    await new_page.get_by_label("New password again").fill("short")
    async with new_page.expect_navigation():
        await new_page.get_by_role("button", name="Save password").click()
    assert "at least 10 characters" in await new_page.get_by_role("alert").inner_text()

    await new_page.get_by_label("New password", exact=True).fill("a brand new password")
    await new_page.get_by_label("New password again").fill("a brand new password")
    await new_page.get_by_role("button", name="Save password").click()
    await new_page.wait_for_url("**/settings?changed=password")
    assert "Your password was changed" in await new_page.locator(".flash-ok").inner_text()

    await new_page.get_by_role("button", name="Sign out").click()
    await new_page.wait_for_url("**/sign-in")
    await sign_in(new_page, email, "a brand new password")
    assert new_page.url.endswith("/settings")


async def test_unknown_console_paths_are_html_and_api_paths_stay_json(
    new_page: Any, console: Console
) -> None:
    answer = await new_page.goto("/no-such-page")
    assert answer is not None and answer.status == 404
    assert "There is no page at /no-such-page" in await new_page.content()
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["x-frame-options"] == "DENY"
    for path in ("/api/no-such-thing", "/v1/nope", "/prompt/x/nope"):
        api = await new_page.request.get(console.url + path)
        assert api.status in (401, 404) and api.headers["content-type"].startswith("application/json"), path
