"""Datasets in a real browser, on SQLite and PostgreSQL: Add to dataset from a run's page, the
prompt's Datasets tab, a dataset's cases added, edited and deleted through forms, and the upload
box (a bad file shows every problem and imports nothing; a good one adds its cases)."""

from __future__ import annotations

import itertools
from typing import Any

from tests.support.browser import shot
from tests.support.invoking import invoke
from tests.web.conftest import Console

BAD_FILE = b'{"inputs": {"text": "fine"}}\n{"inputs": "oops"}\n{not json\n{"inputs": {}, "tags": [1]}\n'
GOOD_CSV = (
    b"text,audience,expected,tags\nA short story,kids,Once upon a time,stories;short\nA poem,adults,,poems\n"
)
NAMES = itertools.count()


async def test_add_a_run_then_edit_cases_and_upload_files(
    upstream_page: Any, upstream_console: Console
) -> None:
    page, name = upstream_page, f"from-logs-{next(NAMES)}"
    answer = invoke(upstream_console, "fast", expect=200).json()
    upstream_console.live.call(upstream_console.live.services.writer.flush)

    await page.goto(f"/logs/{answer['request_id']}")
    async with page.expect_navigation():
        await page.get_by_role("link", name="Add to dataset").click()
    await page.get_by_label("Dataset", exact=True).select_option("__new__")
    await page.get_by_label("Name of a new dataset").fill(name)
    assert await page.get_by_label("Keep the run's output as the expected output").is_checked()
    await shot(page, "datasets-add-run")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Add to dataset").click()
    assert page.url.endswith(f"/prompts/fast/datasets/{name}")
    assert f"added to {name} as case 1" in await page.locator(".flash-ok").inner_text()
    cases = page.locator("#cases")
    assert "Hello, world!" in await cases.inner_text() and "The quick brown fox" in await cases.inner_text()
    assert await cases.get_by_role("link", name="run").count() == 1

    add = page.get_by_role("form", name="Add a case")
    await add.get_by_label("Inputs").fill('{"text": "Summarize this", "audience": "experts"}')
    await add.get_by_label("Expected output").fill("A summary")
    await add.get_by_label("Tags").fill("manual, edge")
    async with page.expect_navigation():
        await add.get_by_role("button", name="Add case").click()
    assert "Case added." in await page.locator(".flash-ok").inner_text()
    assert "Summarize this" in await cases.inner_text()

    await cases.locator("tr", has_text="Summarize this").get_by_role("link", name="Edit").click()
    edit = page.get_by_role("form", name="Edit case 2")
    await edit.get_by_label("Inputs").fill('{"text": 5')
    async with page.expect_navigation():
        await edit.get_by_role("button", name="Save case").click()
    assert "inputs: not valid JSON" in await page.locator(".flash-error").inner_text()
    await (
        page.get_by_role("form", name="Edit case 2").get_by_label("Inputs").fill('{"text": "Summarize that"}')
    )
    async with page.expect_navigation():
        await page.get_by_role("form", name="Edit case 2").get_by_role("button", name="Save case").click()
    assert "Summarize that" in await cases.inner_text() and "Summarize this" not in await cases.inner_text()

    upload = page.get_by_role("form", name="Upload cases")
    await upload.get_by_label("File").set_input_files(
        {"name": "bad.jsonl", "mimeType": "application/jsonl", "buffer": BAD_FILE}
    )
    async with page.expect_navigation():
        await upload.get_by_role("button", name="Upload").click()
    problems = await page.locator("#problems li").all_inner_texts()
    assert problems == [
        "line 2: `inputs` must be an object",
        "line 3: not valid JSON (unexpected character, expected a string key at column 2)",
        "line 4: `tags` must be a list of strings",
    ]
    assert "nothing changed" in await page.locator(".flash-error").inner_text()
    assert await cases.locator("tbody tr").count() == 2
    await shot(page, "datasets-bad-upload")

    await upload.get_by_label("File").set_input_files(
        {"name": "more.csv", "mimeType": "text/csv", "buffer": GOOD_CSV}
    )
    async with page.expect_navigation():
        await upload.get_by_role("button", name="Upload").click()
    assert "2 cases added" in await page.locator(".flash-ok").inner_text()
    assert await cases.locator("tbody tr").count() == 4
    await shot(page, "datasets-cases")

    page.once("dialog", lambda dialog: dialog.accept())
    async with page.expect_navigation():
        await page.get_by_role("button", name="Delete case 1").click()
    assert await cases.locator("tbody tr").count() == 3

    await page.get_by_role("link", name="Datasets", exact=True).click()
    await page.wait_for_url("**/prompts/fast/datasets")
    row = page.locator("#datasets tr", has_text=name)
    assert "3" in await row.inner_text()
    await page.get_by_label("Name", exact=True).fill(name)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Create dataset").click()
    assert "already has a dataset" in await page.locator(".flash-error").inner_text()
    await shot(page, "datasets-tab")
