"""The Deployments screens in a real browser, on SQLite and PostgreSQL: create a deployment,
move and roll back a variant with notes (the history shows them), split traffic, the code
snippet panel; and over plain HTTP, what a viewer sees and what a bad address answers."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from tests.support.browser import shot
from tests.web.conftest import Console

NAMES = itertools.count()


def admin(console: Console) -> httpx.Client:
    return httpx.Client(
        base_url=console.url, headers={"Authorization": f"Bearer {console.admin_key}"}, timeout=30
    )


async def text_of(locator: Any) -> str:
    """An element's text with its whitespace (line breaks between flex items...) as single spaces."""
    return " ".join((await locator.inner_text()).split())


def new_prompt(console: Console, versions: int = 2) -> str:
    """A prompt of its own for one test (the server is shared), with `versions` versions."""
    slug = f"story-{next(NAMES)}"
    with admin(console) as client:
        assert client.post("/api/prompts", json={"slug": slug}).status_code == 201
        for number in range(1, versions + 1):
            body = {
                "model": "openai/fast",
                "messages": [
                    {"role": "user", "content": f"Tell a story about {{{{topic}}}} (take {number})"}
                ],
                "inputs": {"topic": {"type": "string"}},
                "note": f"take {number}",
            }
            answer = client.post(f"/api/prompts/{slug}/versions", json=body)
            assert answer.status_code == 201, answer.text
    return slug


async def test_an_editor_creates_a_deployment_moves_and_rolls_back_with_notes(
    upstream_page: Any, upstream_console: Console
) -> None:
    page = upstream_page
    slug = new_prompt(upstream_console)
    await page.goto("/deployments")
    form = page.locator("#create-deployment")

    # inline errors, nothing typed lost
    await form.get_by_role("button", name="Create deployment").click()
    assert "give the deployment a name" in await form.locator(".form-error").inner_text()
    await form.get_by_label("Name").fill("fast")  # taken by the fixture's deployment
    await form.get_by_label("Prompt").select_option(slug)
    await form.get_by_role("button", name="Create deployment").click()
    await form.locator(".form-error", has_text="already exists").wait_for()
    assert await form.get_by_label("Name").input_value() == "fast"

    name = f"{slug}-live"
    await form.get_by_label("Name").fill(name)
    await form.get_by_label("Default variant").fill("main")
    await form.get_by_label("Version").select_option("1")
    async with page.expect_navigation():
        await form.get_by_role("button", name="Create deployment").click()
    assert page.url.endswith(f"/deployments/{name}")
    assert f"Deployment {name} created." in await page.locator(".flash-ok").inner_text()
    assert "main → v1" in await text_of(page.locator("#variant"))

    move = page.locator("#move-form")
    await move.get_by_label("To version").select_option("2")
    await move.get_by_label("Note").fill("take two reads better")
    async with page.expect_navigation():
        await move.get_by_role("button", name="Move main").click()
    assert "main now serves v2." in await page.locator(".flash-ok").inner_text()
    history = page.locator("table.history tbody tr")
    newest = await history.first.inner_text()
    assert "v1 → v2" in newest and "take two reads better" in newest and "editor" in newest

    rollback = page.locator("#rollback-form")
    await rollback.get_by_label("Rollback note").fill("customers preferred take one")
    page.once("dialog", lambda dialog: dialog.accept())
    async with page.expect_navigation():
        await rollback.get_by_role("button", name="Roll back to v1").click()
    assert "rolled back to v1" in await page.locator(".flash-ok").inner_text()
    assert await history.count() == 3  # created, moved, rolled back: newest first
    newest = await history.first.inner_text()
    assert "v2 → v1" in newest and "rollback from version 2: customers preferred take one" in newest
    assert "main → v1" in await text_of(page.locator("#variant"))

    # the list shows the new deployment and what its variant points at
    await page.goto("/deployments")
    row = page.locator("tr", has_text=name)
    assert "main → v1" in await text_of(row)
    await shot(page, "deployments")


async def test_a_traffic_split_is_saved_shown_and_stopped(
    upstream_page: Any, upstream_console: Console
) -> None:
    page = upstream_page
    slug = new_prompt(upstream_console)
    with admin(upstream_console) as client:
        answer = client.post("/api/deployments", json={"name": slug, "prompt": slug, "variants": {"ab": 1}})
        assert answer.status_code == 201, answer.text
    await page.goto(f"/deployments/{slug}?variant=ab")
    split = page.locator("#split-form")
    await split.get_by_label("Weight").fill("90")
    await split.get_by_role("button", name="Add a version").click()
    await split.get_by_label("Version", exact=True).nth(1).select_option("2")
    await split.get_by_label("Weight").nth(1).fill("10")
    async with page.expect_navigation():
        await split.get_by_role("button", name="Save split").click()
    assert "traffic is split" in await page.locator(".flash-ok").inner_text()
    with admin(upstream_console) as client:
        config = client.get(f"/api/deployments/{slug}").json()["variants"]["ab"]["config"]
    assert config["split"] == [{"version": 1, "weight": 90.0}, {"version": 2, "weight": 10.0}]
    assert "v1 · 90.0, v2 · 10.0" in await page.locator("tr.row-chosen").inner_text()

    await split.get_by_label("Weight").nth(1).fill("-5")
    await split.get_by_role("button", name="Save split").click()
    await split.locator(".form-error", has_text="weight").wait_for()  # the API's own message

    async with page.expect_navigation():
        await split.get_by_role("button", name="Stop splitting").click()
    assert "no longer splits" in await page.locator(".flash-ok").inner_text()


async def test_the_snippet_panel_fills_in_this_server_and_copies_the_python_code(
    upstream_page: Any, upstream_console: Console
) -> None:
    page = upstream_page
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=upstream_console.url)
    await page.goto("/deployments/fast?variant=beta")
    tabs = page.get_by_role("tab")
    assert await tabs.all_inner_texts() == [
        "curl",
        "Python · fetch-hive-sdk",
        "Python · vellum-ai",
        "Python · openai",
        "JavaScript · fetch, streaming",
    ]
    curl = await page.locator("#panel-curl").inner_text()
    assert f"{upstream_console.url}/v1/prompt/invoke" in curl
    assert '"variant": "beta"' in curl and '"text": "<text>"' in curl and '"audience": "<audience>"' in curl
    await shot(page, "deployment-detail")

    await page.get_by_role("tab", name="Python · openai").click()
    panel = page.locator("#panel-python-openai")
    assert await panel.is_visible() and not await page.locator("#panel-curl").is_visible()
    code = await panel.locator("code").inner_text()
    assert 'model="fast@beta"' in code and f'base_url="{upstream_console.url}/v1"' in code
    await panel.get_by_role("button", name="Copy").click()
    await panel.get_by_role("button", name="Copied").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == code

    # arrow keys move between the tabs
    await page.get_by_role("tab", name="Python · openai").focus()
    await page.keyboard.press("ArrowRight")
    assert await page.locator("#panel-js-fetch").is_visible()
    assert "getReader" in await page.locator("#panel-js-fetch").inner_text()


def runs_shown(listing: str, deployment: str) -> int:
    """The list's 24-hour run count of a deployment."""
    row = listing.split(f'href="/deployments/{deployment}"', 1)[1].split("</tr>", 1)[0]
    return int(row.split('title="runs in the last 24 hours">', 1)[1].split("<", 1)[0].replace(",", ""))


def test_a_viewer_reads_deployments_without_any_form(upstream_console: Console) -> None:
    with upstream_console.session_client(upstream_console.add_member("viewer")) as (client, csrf):
        before = runs_shown(client.get("/deployments").text, "fast")
        with admin(upstream_console) as caller:
            invoked = caller.post(
                "/v1/prompt/invoke", json={"deployment": "fast", "inputs": {"text": "a", "audience": "b"}}
            )
            assert invoked.status_code == 200, invoked.text
        upstream_console.live.call(upstream_console.live.services.writer.flush)
        listing = client.get("/deployments")
        assert listing.status_code == 200
        assert runs_shown(listing.text, "fast") == before + 1  # from the usage rollups
        assert "fast" in listing.text and "create-deployment" not in listing.text
        assert "read-only for you" in listing.text
        detail = client.get("/deployments/fast", params={"variant": "beta"})
        assert detail.status_code == 200
        for form in ("move-form", "rollback-form", "split-form", "add-variant"):
            assert form not in detail.text
        assert "panel-python-fetch-hive" in detail.text  # a viewer may still copy the code
        refused = client.put(
            "/api/deployments/fast/variants/beta", json={"version": 1}, headers={"X-CSRF-Token": csrf}
        )
        assert refused.status_code == 403


def test_unknown_deployments_and_variants_are_html_404s(upstream_console: Console) -> None:
    with upstream_console.session_client(upstream_console.add_member("editor")) as (client, _):
        missing = client.get("/deployments/no-such-thing")
        assert missing.status_code == 404 and "no deployment named &#39;no-such-thing&#39;" in missing.text
        assert missing.headers["content-type"].startswith("text/html")
        variant = client.get("/deployments/fast", params={"variant": "nope"})
        assert variant.status_code == 404 and "has no variant &#39;nope&#39;" in variant.text
    anonymous = httpx.get(upstream_console.url + "/deployments/fast", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/sign-in?next=")
