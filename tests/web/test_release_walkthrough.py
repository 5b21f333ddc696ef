"""The whole release path in a real browser, as issue 15 tells it: edit a prompt in the editor and
save it (production still serves the old version; a caller still gets it), evaluate the new
version on a dataset, compare it with an evaluation of what the variant serves, Deploy… (the
release check's report is shown, its gate refuses, the deploy is forced with a reason), then roll
back from the deployment's page: a caller gets the old version again. A screenshot at each step.

The fake upstream answers by model: `openai/fast` says "Hello, world!", `openai/worse` "Goodbye".
"""

from __future__ import annotations

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

PROMPT = "walk"
TEXT = {"text": "The parcel arrived broken and the customer wants a refund."}
# v1 passes cases 1 and 3; v2 (model `worse`) passes none: cases 1 and 3 go from pass to fail.
EXPECTED = ["Hello", "nothing like it", "world"]
GATE = {"name": "quality", "dataset": "golden", "min_pass_rate": 0.5, "no_regressions": True}


def admin(console: Console) -> httpx.Client:
    headers = {"Authorization": f"Bearer {console.admin_key}"}
    return httpx.Client(base_url=console.url, headers=headers, timeout=60)


def answer_now(console: Console) -> str:
    """What a caller of the deployment gets now (Fetch Hive invoke, its default variant)."""
    answer = invoke(console, PROMPT, TEXT, expect=200).json()
    console.live.call(console.live.services.writer.flush)
    return str(answer["response"])


def created(response: httpx.Response) -> None:
    assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A console over the fake upstream with the prompt `walk` (v1, like examples/summarize.yaml),
    its deployment pinned to v1 with a gate, a recent caller, and a dataset `golden`."""
    tmp: Path = tmp_path_factory.mktemp("release-walkthrough")
    with FakeOpenAI() as upstream, deck_over(upstream.url, sqlite_url(tmp), tmp) as deck:
        upstream.scripts["worse"] = Script(chunks=("Good", "bye"))
        console = Console(deck.live, deck.admin_key, deck.workspace_id)
        with admin(console) as client:
            created(client.post("/api/prompts", json={"slug": PROMPT, "name": "Summarize"}))
            version = {
                "model": "openai/fast",
                "params": {"temperature": 0.2, "max_tokens": 64},
                "messages": [
                    {"role": "system", "content": "You summarize text in one sentence."},
                    {"role": "user", "content": "Summarize: {{text}}"},
                ],
                "inputs": {"text": {"type": "string", "required": True}},
                "note": "first take",
            }
            created(client.post(f"/api/prompts/{PROMPT}/versions", json=version))
            deployment = {"name": PROMPT, "prompt": PROMPT, "variants": {"default": 1}}  # pinned
            created(client.post("/api/deployments", json=deployment))
            dataset = {
                "name": "golden",
                "description": "cases we never want to break",
                "evaluators": [{"type": "contains", "name": "says the expected"}],
                "cases": [{"inputs": TEXT, "expected": text} for text in EXPECTED],
            }
            created(client.post(f"/api/prompts/{PROMPT}/datasets", json=dataset))
            config = client.put(f"/api/deployments/{PROMPT}/variants/default/config", json={"gates": [GATE]})
            assert config.status_code == 200, config.text
        assert answer_now(console) == "Hello, world!"  # a recent caller, for the input check
        yield console


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any, walk: Console) -> AsyncIterator[Any]:
    opened = await browser.new_context(viewport=DESKTOP, base_url=walk.url)
    yield opened
    await opened.close()


async def wait_until_done(page: Any) -> None:
    """On an evaluation's page: until it has ended and the page shows its summary."""
    await page.locator("#eval-status", has_text="done").wait_for(timeout=30_000)
    await page.locator("#summary").wait_for()


async def test_edit_save_evaluate_compare_deploy_and_roll_back(context: Any, walk: Console) -> None:
    editor = await context.new_page()
    editor.set_default_timeout(15_000)
    await sign_in(editor, walk.add_member("editor"), next_path=f"/prompts/{PROMPT}")

    # 1. Edit and save: production still serves v1, and a caller still gets it.
    await editor.get_by_label("Model name").fill("worse")
    await editor.get_by_label("Message 1 (system)").fill("You summarize text in one short sentence.")
    await editor.get_by_label("Note for this version").fill("a cheaper model")
    await editor.get_by_role("button", name="Save version").click()
    said = editor.locator("#saved-says")
    await said.wait_for()
    assert f"Saved as v2 — {PROMPT} still serves v1." in await said.inner_text()
    assert answer_now(walk) == "Hello, world!"
    await shot(editor, "release-1-saved")

    # 2. The dataset (made through the API) in the console.
    tab = await context.new_page()  # a second tab: the editor keeps its Deploy… step
    tab.set_default_timeout(15_000)
    await tab.goto(f"/prompts/{PROMPT}/datasets/golden")
    assert await tab.locator("#cases tbody tr").count() == 3
    await shot(tab, "release-2-dataset")

    # 3. Evaluate the new version; wait for it to finish.
    await tab.goto(f"/prompts/{PROMPT}/evaluations")
    start = tab.get_by_role("form", name="Start an evaluation")
    await start.get_by_label("Dataset").select_option("golden")
    await start.get_by_label("What to run").select_option("version:2")
    async with tab.expect_navigation():
        await start.get_by_role("button", name="Start evaluation").click()
    new_id = tab.url.rsplit("/", 1)[1]
    await wait_until_done(tab)
    assert await tab.locator("#pass-rate").inner_text() == "0 %"
    await shot(tab, "release-3-evaluated")

    # 4. Evaluate what production serves, then compare: the pass→fail cases come first.
    await tab.goto(f"/prompts/{PROMPT}/evaluations")
    await start.get_by_label("What to run").select_option(label=f"{PROMPT} / default — serves v1")
    async with tab.expect_navigation():
        await start.get_by_role("button", name="Start evaluation").click()
    served_id = tab.url.rsplit("/", 1)[1]
    await wait_until_done(tab)
    assert await tab.locator("#pass-rate").inner_text() == "67 %"
    await tab.get_by_role("link", name="← Evaluations").click()
    for evaluation_id in (new_id, served_id):
        await tab.locator(f"#evaluation-{evaluation_id} input[type=checkbox]").check()
    await shot(tab, "release-4-evaluations")
    async with tab.expect_navigation():
        await tab.get_by_role("button", name="Compare selected").click()
    assert "2 went from pass to fail" in await tab.locator("#change-counts").inner_text()
    rows = tab.locator("#case-changes tbody tr")
    assert [await rows.nth(i).get_attribute("class") for i in range(3)] == [
        "change-regressed",
        "change-regressed",
        "change-same",
    ]
    await shot(tab, "release-5-compare")

    # 5. Deploy…: the release check's report is shown; the gate refuses; forced with a reason.
    await editor.bring_to_front()
    await said.get_by_role("button", name="Deploy…").click()
    report = editor.locator("#deploy-report")
    await report.locator(".check-refused").wait_for(timeout=30_000)
    text = await report.inner_text()
    assert "Gate quality failed" in text and "2 case(s)" in text, text
    confirm = editor.locator("#deploy-confirm")
    assert await confirm.is_disabled()
    await shot(editor, "release-6-deploy-report")
    await editor.get_by_label("Reason to deploy anyway").fill("the cheaper model is worth it for now")
    await confirm.click()
    await editor.locator("#deploy-done").wait_for()
    assert f"{PROMPT}/default now serves v2." in await editor.locator("#deploy-done").inner_text()
    assert answer_now(walk) == "Goodbye"
    await shot(editor, "release-7-deployed")

    # 6. Roll back from the deployment's page (its gate is shown there): callers get v1 again.
    await tab.goto(f"/deployments/{PROMPT}")
    gates = await tab.locator("#variant-gates").inner_text()
    assert "quality on dataset golden, pass rate ≥ 50 %, no case from pass to fail" in gates
    tab.once("dialog", lambda dialog: dialog.accept())
    rollback = tab.locator("#rollback-form")
    await rollback.get_by_label("Rollback note").fill("answers got worse")
    async with tab.expect_navigation():
        await rollback.get_by_role("button", name="Roll back to v1").click()
    assert "rolled back to v1" in await tab.locator(".flash-ok").inner_text()
    history = await tab.locator("table.history tbody tr").first.inner_text()
    assert "v2 → v1" in history and "answers got worse" in history
    assert answer_now(walk) == "Hello, world!"
    await shot(tab, "release-8-rolled-back")
