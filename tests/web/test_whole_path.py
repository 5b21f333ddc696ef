"""The console's whole path in one browser session, as a new user walks it, on SQLite and
PostgreSQL: sign in → create a prompt → run it in the playground (the streamed answer appears)
→ save a version → deploy it → copy the Python snippet and run it (it succeeds against the
server) → find that run in the logs by a metadata filter → open it.

The prompt's model is `openai/fast`, answered by the fake upstream of tests/support/fake_openai.py
(a local HTTP server speaking OpenAI's streaming format); everything else is the real server."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from pathlib import Path
from subprocess import PIPE
from typing import Any

from tests.support.browser import DESKTOP, shot
from tests.web.conftest import Console, sign_in

NAMES = itertools.count()


async def test_sign_in_create_run_save_deploy_snippet_logs(
    browser: Any, upstream_console: Console, tmp_path: Path
) -> None:
    console = upstream_console
    slug = f"greeter-{next(NAMES)}"
    context = await browser.new_context(viewport=DESKTOP, base_url=console.url)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.url)
    script_errors: list[str] = []
    context.on("weberror", lambda error: script_errors.append(str(error.error)))
    page = await context.new_page()
    page.set_default_timeout(15_000)

    # sign in
    await sign_in(page, console.add_member("editor"), next_path="/prompts")
    assert page.url.endswith("/prompts"), page.url

    # create a prompt
    form = page.get_by_role("form", name="New prompt")
    await page.get_by_text("New prompt").first.click()
    await form.get_by_label("Slug").fill(slug)
    await form.get_by_label("Name").fill("Greeter")
    async with page.expect_navigation():
        await form.get_by_role("button", name="Create prompt").click()
    assert page.url.endswith(f"/prompts/{slug}"), page.url
    await page.get_by_label("Provider").select_option("openai")
    await page.get_by_label("Model name").fill("fast")
    await page.get_by_label("Message 1 (system)").fill("You greet people in one line.")
    await page.get_by_label("Message 2 (user)").fill("Greet {{name}}.")

    # run the unsaved draft in the playground: the streamed answer appears
    await page.locator("#pg-in-name").fill("Ada")
    await page.get_by_role("button", name="Run").click()
    column = page.locator(".pg-column")
    await column.locator(".pg-status", has_text="done").wait_for()
    assert await column.locator(".pg-answer").inner_text() == "Hello, world!"

    # save a version
    await page.get_by_label("Note for this version").fill("first greeting")
    await page.get_by_role("button", name="Save version").click()
    await page.locator("#save-status", has_text="Saved as v1").wait_for()

    # deploy it
    await page.goto("/deployments")
    create = page.locator("#create-deployment")
    await create.get_by_label("Name").fill(slug)
    await create.get_by_label("Prompt").select_option(slug)
    await create.get_by_label("Default variant").fill("main")
    await create.get_by_label("Version").select_option("1")
    async with page.expect_navigation():
        await create.get_by_role("button", name="Create deployment").click()
    assert page.url.endswith(f"/deployments/{slug}"), page.url

    # copy the Python snippet and run it as a user would
    await page.get_by_role("tab", name="Python · fetch-hive-sdk").click()
    panel = page.locator("#panel-python-fetch-hive")
    await panel.get_by_role("button", name="Copy").click()
    await panel.get_by_role("button", name="Copied").wait_for()
    code = await page.evaluate("navigator.clipboard.readText()")
    assert f"{console.url}/v1" in code and slug in code and '"name"' in code
    program = tmp_path / "snippet.py"
    program.write_text(code)
    env = {**os.environ, "PROMPTDECK_API_KEY": console.admin_key}
    ran = await asyncio.create_subprocess_exec(
        sys.executable, str(program), env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(ran.communicate(), timeout=60)
    assert ran.returncode == 0, err.decode()
    assert "Hello, world!" in out.decode()

    # find that run in the logs by a metadata filter, and open it
    await page.goto(f"/logs?deployment={slug}")
    await page.get_by_label("Metadata condition").first.fill("environment=development")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Apply").click()
    rows = page.locator("#runs tr.run-row")
    await rows.first.wait_for()
    assert await rows.count() == 1
    await shot(page, "whole-path-logs")
    async with page.expect_navigation():
        await rows.first.locator("td").first.click()
    main = page.locator("main")
    text = await main.inner_text()
    assert "Hello, world!" in text and "environment" in text and slug in text
    assert "/logs/" in page.url
    await shot(page, "whole-path-run")
    await context.close()
    assert not script_errors, script_errors
