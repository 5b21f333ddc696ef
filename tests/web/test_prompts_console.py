"""The Prompts screens in a real browser, on SQLite and PostgreSQL: the list and "New prompt",
the editor (messages, inputs found while typing, saving with a note, errors inline, drafts
that survive a reload and an expired session), the playground (a streamed answer, two
versions side by side), the version history and the diff; and over plain HTTP, the page
routes' roles, CSRF and bad addresses."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.browser import DESKTOP, shot
from tests.support.fake_openai import FakeOpenAI, Script, deck_over, sqlite_url
from tests.support.invoking import invoke
from tests.web.conftest import Console, sign_in

NAMES = itertools.count()
SLOW = ("Owls ", "hunt ", "at ", "night", ".")


class PromptsConsole(Console):
    """A console whose `openai/<model>` answers come from `upstream`, scripted per model."""

    upstream: FakeOpenAI


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deck(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PromptsConsole]:
    tmp: Path = tmp_path_factory.mktemp(f"prompts-console-{request.param}")
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    url = postgres.new_database() if postgres else sqlite_url(tmp)
    with FakeOpenAI() as upstream, deck_over(upstream.url, url, tmp) as served:
        upstream.scripts["slow"] = Script(chunks=SLOW, delay=0.4)
        upstream.scripts["other"] = Script(chunks=("Bats ", "too", "."), delay=0.05)
        console = PromptsConsole(served.live, served.admin_key, served.workspace_id)
        with admin(console) as client:
            price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
            assert client.put("/api/prices/openai/slow", json=price).status_code == 200
        console.upstream = upstream
        yield console


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any, deck: PromptsConsole) -> AsyncIterator[Any]:
    """A browser context of its own (cookies, localStorage) that fails the test on a script error."""
    made = await browser.new_context(viewport=DESKTOP, base_url=deck.url)
    errors: list[str] = []
    made.on("weberror", lambda error: errors.append(str(error.error)))
    yield made
    await made.close()
    assert not errors, errors


async def page_as(context: Any, deck: PromptsConsole, role: str, next_path: str) -> Any:
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await sign_in(page, deck.add_member(role), next_path=next_path)
    assert page.url.endswith(next_path), page.url
    return page


def admin(deck: Console) -> httpx.Client:
    return httpx.Client(base_url=deck.url, headers={"Authorization": f"Bearer {deck.admin_key}"}, timeout=30)


def new_prompt(deck: Console, *contents: str, model: str = "openai/fast") -> str:
    """A prompt of the test's own, with one version per message content given."""
    slug = f"owl-{next(NAMES)}"
    with admin(deck) as client:
        assert client.post("/api/prompts", json={"slug": slug, "name": f"Owl {slug}"}).status_code == 201
        for number, content in enumerate(contents, 1):
            body = {
                "model": model,
                "params": {"temperature": 0.2},
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": content},
                ],
                "note": f"take {number}",
            }
            assert client.post(f"/api/prompts/{slug}/versions", json=body).status_code == 201
    return slug


def versions_of(deck: Console, slug: str) -> list[dict[str, Any]]:
    with admin(deck) as client:
        return list(client.get(f"/api/prompts/{slug}/versions").json()["data"])


async def text_of(locator: Any) -> str:
    return " ".join((await locator.inner_text()).split())


# ── the list ─────────────────────────────────────────────────────────────────


async def test_the_list_searches_and_new_prompt_errors_keep_what_was_typed(
    context: Any, deck: PromptsConsole
) -> None:
    slug = new_prompt(deck, "Tell me about {{topic}}.")
    page = await page_as(context, deck, "editor", "/prompts")
    rows = page.locator("#prompt-rows tr[data-filter-text]")
    assert await rows.count() >= 2
    fast = page.locator('#prompt-rows tr[data-filter-text="fast fast"]')
    assert "openai/fast" in await text_of(fast) and "v1" in await text_of(fast)
    assert await fast.locator("a.badge").get_attribute("href") == "/deployments/fast"
    await shot(page, "prompts")

    await page.keyboard.press("/")  # the search box takes the focus
    await page.keyboard.type(slug)
    assert await page.locator("#prompt-rows tr[data-filter-text]:visible").count() == 1
    assert await page.locator("#prompt-count").inner_text() == f"1 of {await rows.count()}"
    await page.keyboard.type("-nothing")
    assert await page.locator(".filter-empty").is_visible()

    form = page.get_by_role("form", name="New prompt")
    await page.get_by_text("New prompt").first.click()
    await form.get_by_label("Slug").fill("Not A Slug")
    await form.get_by_label("Name").fill("Kept name")
    async with page.expect_navigation():
        await form.get_by_role("button", name="Create prompt").click()
    error = page.locator("#create-error")
    assert "lower-case letters" in await error.inner_text()
    assert await form.get_by_label("Name").input_value() == "Kept name"
    assert await form.get_by_label("Slug").get_attribute("aria-invalid") == "true"

    await form.get_by_label("Slug").fill("fast")
    async with page.expect_navigation():
        await form.get_by_role("button", name="Create prompt").click()
    assert "already exists" in await page.locator("#create-error").inner_text()
    assert await form.get_by_label("Name").input_value() == "Kept name"

    fresh = f"fresh-{next(NAMES)}"
    await form.get_by_label("Slug").fill(fresh)
    async with page.expect_navigation():
        await form.get_by_role("button", name="Create prompt").click()
    assert page.url.endswith(f"/prompts/{fresh}")
    assert "Kept name" in await page.locator("h1").inner_text()


# ── the editor ───────────────────────────────────────────────────────────────


async def test_an_editor_writes_messages_sees_inputs_appear_and_saves_a_version_with_a_note(
    context: Any, deck: PromptsConsole
) -> None:
    slug = new_prompt(deck)  # no version yet: a blank draft
    page = await page_as(context, deck, "editor", f"/prompts/{slug}")
    assert "no version saved yet" in await page.locator("#editor-base").inner_text()
    await page.get_by_label("Provider").select_option("openai")
    await page.get_by_label("Model name").fill("fast")
    await page.get_by_label("Message 1 (system)").fill("You answer in one line.")
    user = page.get_by_label("Message 2 (user)")
    await user.press_sequentially("Tell {{ name }} about {{order.id")
    inputs = page.locator("#inputs")
    await inputs.locator('[data-input="name"]').wait_for()
    assert await inputs.locator('[data-input="order"]').count() == 0  # not a placeholder yet
    await user.press_sequentially("}}.")
    await inputs.locator('[data-input="order"]').wait_for()
    assert await inputs.get_by_label("Type of input name").input_value() == "string"
    assert await inputs.get_by_label("Type of input order").input_value() == "json"  # dotted path

    # add, reorder (buttons and keyboard), remove
    await page.get_by_role("button", name="+ Add message").click()
    third = page.get_by_label("Message 3 (assistant)")
    assert await third.evaluate("node => node === document.activeElement")
    await third.fill("Sure, here it is:")
    await page.get_by_role("button", name="Move up message 3").click()
    assert await page.get_by_label("Message 2 (assistant)").input_value() == "Sure, here it is:"
    await page.get_by_label("Message 2 (assistant)").press("Alt+ArrowUp")
    assert await page.get_by_label("Message 1 (assistant)").input_value() == "Sure, here it is:"
    focused = await page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused == "Message 1 (assistant)"  # the focus moved with the message
    await page.get_by_label("Message 1 (assistant)").press("Alt+ArrowDown")
    assert await page.get_by_label("Message 2 (assistant)").input_value() == "Sure, here it is:"
    await page.get_by_role("button", name="Remove message 2").click()
    assert await page.locator("#messages > li").count() == 2
    await page.get_by_label("Role of message 1").select_option("system")

    await page.get_by_label("Temperature").fill("0.3")
    await page.get_by_label("Default of input name").fill("Ada")
    await page.get_by_label("Note for this version").fill("first take")
    await shot(page, "prompt-editor")
    await page.keyboard.press("Control+s")
    await page.locator("#save-status", has_text="Saved as v1").wait_for()

    [saved] = versions_of(deck, slug)
    assert saved["note"] == "first take" and saved["author"].startswith("editor")
    assert saved["model"] == "openai/fast" and saved["params"] == {"temperature": 0.3}
    assert [m["content"] for m in saved["messages"]] == [
        "You answer in one line.",
        "Tell {{ name }} about {{order.id}}.",
    ]
    assert saved["inputs"]["name"] == {"type": "string", "required": False, "default": "Ada"}
    assert saved["inputs"]["order"] == {"type": "json", "required": True}
    assert await page.locator("#draft-bar").is_hidden()  # nothing unsaved any more
    assert "based on v1" in await page.locator("#editor-base").inner_text()


async def test_invalid_templates_and_empty_fields_are_shown_next_to_them(
    context: Any, deck: PromptsConsole
) -> None:
    slug = new_prompt(deck, "Hello {{who}}")
    page = await page_as(context, deck, "editor", f"/prompts/{slug}")
    await page.get_by_label("Model name").fill("")
    await page.get_by_label("Message 1 (system)").fill("")
    await page.get_by_role("button", name="Save version").click()
    assert "Choose a model" in await page.locator("#error-model").inner_text()
    assert await page.get_by_label("Model name").get_attribute("aria-invalid") == "true"
    assert "Message 1 is empty" in await page.locator('[data-error-slot="messages[0]"]').inner_text()
    assert "Not saved: 2 problems" in await page.locator("#save-status").inner_text()
    assert len(versions_of(deck, slug)) == 1

    await page.get_by_label("Model name").fill("fast")
    await page.get_by_label("Message 1 (system)").fill("Be brief.")
    await page.get_by_label("Template syntax").select_option("jinja2")
    await page.get_by_label("Message 2 (user)").fill("{% if who %}Hello {{ who }}")
    await page.get_by_label("Temperature").fill("7")
    await page.get_by_role("button", name="Save version").click()
    template_error = page.locator('[data-error-slot="messages[1]"]')
    await template_error.wait_for()
    assert "line 1" in await template_error.inner_text()  # the server's Jinja2 message, on its message
    assert "params.temperature" in await page.locator('[data-error-for="params"]').inner_text()
    assert await page.get_by_label("Message 2 (user)").input_value() == "{% if who %}Hello {{ who }}"  # kept
    await shot(page, "prompt-editor-errors")
    assert len(versions_of(deck, slug)) == 1

    await page.get_by_role("button", name="+ Response format").click()
    await page.get_by_label("Response format").fill('{"type": ')
    assert "Not valid JSON" in await page.locator("#error-response_format").inner_text()


async def test_a_viewer_sees_prompts_read_only(context: Any, deck: PromptsConsole) -> None:
    slug = new_prompt(deck, "Hello {{who}}", "Hi {{who}}")
    page = await page_as(context, deck, "viewer", "/prompts")
    assert await page.get_by_text("New prompt").count() == 0
    await page.goto(f"/prompts/{slug}")
    assert await page.locator("#editor-fields").get_attribute("disabled") is not None
    assert await page.get_by_label("Message 2 (user)").input_value() == "Hi {{who}}"
    assert await page.get_by_label("Message 2 (user)").is_disabled()
    assert await page.get_by_role("button", name="Save version").count() == 0
    assert await page.locator("#pg-run").count() == 0
    assert "needs the editor role" in await page.locator("#playground").inner_text()
    await page.goto(f"/prompts/{slug}/versions")
    assert await page.get_by_role("link", name="Open version 1 in the editor").inner_text() == "View"
    await page.goto(f"/prompts/{slug}?from=1")
    assert await page.get_by_label("Message 2 (user)").input_value() == "Hello {{who}}"


async def test_save_deploys_nothing_and_deploy_is_a_checked_step_of_its_own(
    context: Any, deck: PromptsConsole
) -> None:
    """Saving deploys nothing, except to a variant that follows `latest` (and passes the release
    check): the editor says which deployment still serves what. Deploy… is its own step: choose
    the variant, read the release check's report, then confirm; a refused deploy needs a reason,
    which the variant's history keeps."""
    slug = new_prompt(deck, "Hello {{who}}")
    pinned = f"{slug}-pinned"
    with admin(deck) as client:
        for name, version in ((pinned, 1), (f"{slug}-follows", "latest")):
            body = {"name": name, "prompt": slug, "variants": {"default": version}}
            assert client.post("/api/deployments", json=body).status_code == 201
        invoke(client, pinned, {"who": "Ann"}, expect=200)  # a recent caller that sends no mood
    deck.live.call(deck.live.services.writer.flush)
    page = await page_as(context, deck, "editor", f"/prompts/{slug}")
    await page.get_by_label("Message 2 (user)").fill("Hello {{who}}, in a {{mood}} mood")
    await page.get_by_role("button", name="Save version").click()
    said = page.locator("#saved-says")
    await said.wait_for()
    text = await text_of(said)
    assert f"Saved as v2 — {pinned} still serves v1." in text, text
    assert f"{slug}-follows/default follows latest and serves it now." in text, text
    with admin(deck) as client:  # production unchanged
        assert client.get(f"/api/deployments/{pinned}").json()["variants"]["default"]["version"] == 1

    await said.get_by_role("button", name="Deploy…").click()
    step = page.locator("#deploy-step")
    assert await page.get_by_label("Deployment and variant").input_value() == "0"
    report = page.locator("#deploy-report")
    await report.locator(".check-refused").wait_for()
    assert "mood is required, but 1 of the last 1 runs did not send it." in await text_of(report)
    confirm = page.locator("#deploy-confirm")
    assert await confirm.is_disabled() and await confirm.inner_text() == "Deploy v2 anyway"
    await shot(page, "prompt-editor-deploy-refused")
    with admin(deck) as client:  # the preview moved nothing
        assert client.get(f"/api/deployments/{pinned}").json()["variants"]["default"]["version"] == 1

    await step.get_by_label("Reason to deploy anyway").fill("every caller sends mood from today")
    await confirm.click()
    done = page.locator("#deploy-done")
    await done.wait_for()
    assert f"{pinned}/default now serves v2." in await text_of(done)
    await shot(page, "prompt-editor-deployed")
    with admin(deck) as client:
        history = client.get(f"/api/deployments/{pinned}/variants/default/history").json()["data"]
    assert history[0]["to_version"] == 2
    assert history[0]["note"] == "deployed from the editor (forced: every caller sends mood from today)"


async def test_a_draft_survives_a_reload_and_an_expired_session(context: Any, deck: PromptsConsole) -> None:
    slug = new_prompt(deck, "Hello {{who}}")
    page = await page_as(context, deck, "editor", f"/prompts/{slug}")
    await page.get_by_label("Message 2 (user)").fill("Hello {{who}}, twice")
    await page.get_by_label("Note for this version").fill("kept note")
    await page.locator("#draft-bar", has_text="Unsaved changes").wait_for()
    await page.reload()
    assert "Restored your unsaved draft" in await page.locator("#draft-bar").inner_text()
    assert await page.get_by_label("Message 2 (user)").input_value() == "Hello {{who}}, twice"
    assert await page.get_by_label("Note for this version").input_value() == "kept note"

    await context.clear_cookies()  # the session ends while the page is open
    await page.get_by_role("button", name="Save version").click()
    await page.locator("#save-status", has_text="your session expired").wait_for()
    assert await page.locator("#session-banner").is_visible()
    assert await page.get_by_label("Message 2 (user)").input_value() == "Hello {{who}}, twice"
    assert len(versions_of(deck, slug)) == 1

    other = await page_as(context, deck, "editor", "/prompts")  # signing in again in another tab
    await other.close()
    await page.get_by_role("button", name="Save version").click()  # the new session's token is fetched
    await page.locator("#save-status", has_text="Saved as v2").wait_for()
    assert versions_of(deck, slug)[-1]["note"] == "kept note"

    await page.get_by_label("Message 2 (user)").fill("thrown away")
    await page.locator("#draft-bar", has_text="Unsaved changes").wait_for()
    await page.get_by_role("button", name="Discard draft").click()
    assert await page.get_by_label("Message 2 (user)").input_value() == "Hello {{who}}, twice"
    await page.reload()
    assert await page.locator("#draft-bar").is_hidden()


# ── the playground ───────────────────────────────────────────────────────────


async def test_the_playground_streams_the_unsaved_draft_with_usage_cost_and_timing(
    context: Any, deck: PromptsConsole
) -> None:
    slug = new_prompt(deck, "Tell {{who}} about owls.")
    page = await page_as(context, deck, "editor", f"/prompts/{slug}")
    await page.get_by_label("Model name").fill("slow")  # the draft, not v1, is what runs
    await page.get_by_label("Message 2 (user)").fill("Tell {{who}} about {{topic}}.")
    await page.locator("#pg-in-topic").wait_for()  # a field for the new input
    await page.locator("#pg-in-who").fill("Ada")
    await page.locator("#pg-in-topic").fill("owls")
    await page.keyboard.press("Control+Enter")
    column = page.locator(".pg-column")
    await column.locator(".pg-answer", has_text="Owls hunt").wait_for()
    assert await column.locator(".pg-status").inner_text() == "streaming"
    await shot(page, "playground-running")
    await column.locator(".pg-status", has_text="done").wait_for(timeout=15_000)
    assert await column.locator(".pg-answer").inner_text() == "Owls hunt at night."
    stats = (await text_of(column.locator(".pg-stats"))).lower()
    assert "tokens in 11" in stats and "out 4" in stats and "stop stop" in stats
    assert "cost $0.000019" in stats  # 11 tokens in at $1/MTok, 4 out at $2/MTok
    assert re.search(r"first token \d+ ms", stats) and re.search(r"total \d", stats)
    link = await column.get_by_role("link", name="Open this run in the logs").get_attribute("href")
    assert link and link.startswith("/logs/")
    await shot(page, "playground")

    sent = deck.upstream.seen[-1].body
    assert sent["model"] == "slow" and "Tell Ada about owls." in str(sent["messages"])
    with admin(deck) as client:
        run = client.get(f"/api/runs/{link.removeprefix('/logs/')}").json()
    assert run["deployment"] == f"playground:{slug}" and run["inputs"] == {"who": "Ada", "topic": "owls"}

    # a missing input is the server's word, shown on its field
    await page.locator("#pg-in-topic").fill("")
    await page.get_by_role("button", name="Run").click()
    await column.locator(".pg-error", has_text="missing required input").wait_for()
    assert await page.locator("#pg-in-topic").get_attribute("aria-invalid") == "true"


async def test_two_versions_run_side_by_side_on_the_same_inputs(context: Any, deck: PromptsConsole) -> None:
    slug = new_prompt(deck, "Tell {{who}} about owls.", model="openai/slow")
    with admin(deck) as client:
        body = {
            "model": "openai/other",
            "messages": [{"role": "user", "content": "Bats for {{who}}"}],
            "note": "bats",
        }
        assert client.post(f"/api/prompts/{slug}/versions", json=body).status_code == 201
    page = await page_as(context, deck, "editor", f"/prompts/{slug}")
    await page.get_by_label("Side by side").check()
    await page.get_by_label("Run", exact=True).select_option("1")
    await page.get_by_label("Against").select_option("2")
    await page.locator("#pg-in-who").fill("Ada")
    await page.get_by_role("button", name="Run").click()
    columns = page.locator(".pg-column")
    assert await columns.count() == 2
    await columns.nth(1).locator(".pg-status", has_text="done").wait_for()
    assert await columns.nth(0).locator(".pg-status").inner_text() == "streaming"  # both at once
    await columns.nth(0).locator(".pg-status", has_text="done").wait_for(timeout=15_000)
    assert await columns.nth(0).locator(".pg-answer").inner_text() == "Owls hunt at night."
    assert await columns.nth(1).locator(".pg-answer").inner_text() == "Bats too."
    assert (
        "Version 1" in await columns.nth(0).inner_text() and "Version 2" in await columns.nth(1).inner_text()
    )
    await shot(page, "playground-side-by-side")


# ── versions and diff ────────────────────────────────────────────────────────


async def test_the_history_lists_versions_and_the_diff_marks_every_change(
    context: Any, deck: PromptsConsole
) -> None:
    slug = new_prompt(
        deck, "Tell {{who}} about owls.\nKeep it short.", "Tell {{who}} about bats.\nKeep it short."
    )
    with admin(deck) as client:
        body = {"name": f"{slug}-live", "prompt": slug, "variants": {"production": 1, "canary": 2}}
        assert client.post("/api/deployments", json=body).status_code == 201
    page = await page_as(context, deck, "editor", f"/prompts/{slug}/versions")
    first, second = page.locator("#v1"), page.locator("#v2")
    assert "take 1" in await first.inner_text() and f"{slug}-live:production" in await first.inner_text()
    assert "latest" in await second.inner_text() and f"{slug}-live:canary" in await second.inner_text()
    assert "admin" in await first.inner_text()  # written with the admin key: its name is the author
    await shot(page, "prompt-versions")

    async with page.expect_navigation():
        await page.get_by_role("button", name="Compare selected").click()
    address = httpx.URL(page.url)
    assert address.path == f"/prompts/{slug}/diff" and dict(address.params) == {"from": "1", "to": "2"}
    message = page.get_by_role("article", name="Message 2 (user), changed")
    lines = [" ".join(line.split()) for line in (await message.locator(".diff-line").all_inner_texts())]
    assert "- Tell {{who}} about owls." in lines and "+ Tell {{who}} about bats." in lines
    assert "Keep it short." in lines  # unchanged context, unmarked
    assert await message.locator(".diff-add").count() == 1 and await message.locator(".diff-del").count() == 1
    await shot(page, "prompt-diff")

    await page.get_by_role("link", name="Open v2 in the editor").click()
    await page.goto(f"/prompts/{slug}?from=1")  # an older version becomes the draft
    assert (
        await page.get_by_label("Message 2 (user)").input_value()
        == "Tell {{who}} about owls.\nKeep it short."
    )
    assert "based on v1" in await page.locator("#editor-base").inner_text()
    assert page.url.endswith(f"/prompts/{slug}")  # a reload keeps the draft, not ?from=
    await page.reload()
    assert (
        await page.get_by_label("Message 2 (user)").input_value()
        == "Tell {{who}} about owls.\nKeep it short."
    )


# ── over plain HTTP ──────────────────────────────────────────────────────────


def test_page_routes_check_roles_csrf_and_addresses(deck: PromptsConsole) -> None:
    slug = new_prompt(deck, "Hello {{who}}", "Hello {{who}}")
    with httpx.Client(base_url=deck.url) as anonymous:
        answer = anonymous.get(f"/prompts/{slug}/versions")
        assert (
            answer.status_code == 303
            and answer.headers["location"] == f"/sign-in?next=/prompts/{slug}/versions"
        )

    with deck.session_client(deck.add_member("viewer")) as (viewer, token):
        listing = viewer.get("/prompts", params={"q": slug})
        assert (
            listing.status_code == 200
            and slug in listing.text
            and 'method="post"' not in listing.text.split("<main", 1)[1]
        )
        assert 'href="/prompts/fast"' not in listing.text  # filtered by q
        refused = viewer.post("/prompts", data={"slug": "by-viewer", "csrf_token": token})
        assert refused.status_code == 403 and "needs the editor role" in refused.text
        for path in (f"/prompts/{slug}", f"/prompts/{slug}/versions", f"/prompts/{slug}/diff"):
            shown = viewer.get(path)
            assert shown.status_code == 200, path
            assert shown.headers["content-security-policy"].startswith("default-src 'self'")

    with deck.session_client(deck.add_member("editor")) as (editor, token):
        forged = editor.post("/prompts", data={"slug": "forged-slug", "name": "Forged"})
        assert forged.status_code == 403 and "security token (CSRF)" in forged.text
        assert 'value="forged-slug"' in forged.text  # what was typed is still in the form
        empty = editor.post("/prompts", data={"slug": "  ", "csrf_token": token})
        assert empty.status_code == 422 and "slug: required" in empty.text
        made = editor.post("/prompts", data={"slug": f"made-{next(NAMES)}", "csrf_token": token})
        assert made.status_code == 303 and made.headers["location"].startswith("/prompts/made-")

        opened = editor.get(f"/prompts/{slug}", params={"version": "1"})  # the logs' link to a version
        assert opened.status_code == 200 and '"opened": {' in opened.text
        assert '"local/smollm2-135m-instruct"' in opened.text or '"local": []' in opened.text  # model picker
        assert '"openai/gpt-4o-mini"' in opened.text  # a chat model the price list knows
        assert '"opened": null' in editor.get(f"/prompts/{slug}").text
        assert editor.get("/prompts/no-such-prompt").status_code == 404
        assert editor.get(f"/prompts/{slug}?from=9").status_code == 404
        bad = editor.get(f"/prompts/{slug}/diff", params={"from": "one", "to": "2"})
        assert bad.status_code == 422 and "expected a version number" in bad.text
        same = editor.get(f"/prompts/{slug}/diff", params={"from": "1", "to": "2"})
        assert same.status_code == 200 and "These versions are identical" in same.text
        default = editor.get(f"/prompts/{slug}/diff")  # the newest version against the one before
        assert "v1 → v2" in default.text
        with admin(deck) as client:
            api_diff = client.get(f"/api/prompts/{slug}/diff", params={"from": 1, "to": 2}).json()
        assert api_diff["identical"] is True and api_diff["changes"] == []
