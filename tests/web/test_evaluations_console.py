"""The console's evaluations in a real browser, on SQLite and PostgreSQL, against the fake upstream:
the Evaluations tab (list, start form), an evaluation's live progress reaching done with its
summary and cases, cancel and re-run, and the compare view with the pass→fail case first."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.browser import DESKTOP, shot
from tests.support.fake_openai import FakeOpenAI, Script, deck_over, sqlite_url
from tests.web.conftest import Console, sign_in

INPUTS = {"text": "a long text", "audience": "children"}
# Against v1 ("Hello, world!") and the `worse` version ("Goodbye"): case 1 is fixed, case 2 fails
# in both, case 3 goes from pass to fail.
EXPECTED = ["Goodbye", "nothing like it", "Hello"]
NAMES = itertools.count()


@dataclass
class Evals:
    console: Console
    upstream: FakeOpenAI
    versions: dict[str, int]  # model -> the version of `fast` it answers

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.console.admin_key}"}
        return httpx.Client(base_url=self.console.url, headers=headers, timeout=30)


def new_version(client: httpx.Client, model: str) -> int:
    body = {
        "model": f"openai/{model}",
        "messages": [{"role": "user", "content": "Summarize for {{audience}}: {{text}}"}],
        "inputs": {"text": {"type": "string"}, "audience": {"type": "string"}},
        "note": f"answered by {model}",
    }
    response = client.post("/api/prompts/fast/versions", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["number"])


def make_dataset(client: httpx.Client, name: str, expected: list[str]) -> None:
    body = {
        "name": name,
        "evaluators": [{"type": "contains", "name": "says it"}],
        "cases": [{"inputs": INPUTS, "expected": text} for text in expected],
    }
    response = client.post("/api/prompts/fast/datasets", json=body)
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def evals(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evals]:
    """A console on each database over a fake upstream, with versions of `fast` answered by
    models that say other things (`worse`) or take their time (`slow`, `stuck`)."""
    tmp: Path = tmp_path_factory.mktemp(f"evaluations-console-{request.param}")
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    url = postgres.new_database() if postgres else sqlite_url(tmp)
    with FakeOpenAI() as upstream, deck_over(upstream.url, url, tmp) as deck:
        upstream.scripts["worse"] = Script(chunks=("Good", "bye"))
        upstream.scripts["slow"] = Script(delay=0.4)
        upstream.scripts["stuck"] = Script(delay=5)
        console = Console(deck.live, deck.admin_key, deck.workspace_id)
        with httpx.Client(
            base_url=deck.url, headers={"Authorization": f"Bearer {deck.admin_key}"}, timeout=30
        ) as client:
            versions = {model: new_version(client, model) for model in ("worse", "slow", "stuck")}
        yield Evals(console, upstream, versions)


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Any, evals: Evals) -> AsyncIterator[Any]:
    """A page signed in as a new editor."""
    context = await browser.new_context(viewport=DESKTOP, base_url=evals.console.url)
    opened = await context.new_page()
    opened.set_default_timeout(15_000)
    await sign_in(opened, evals.console.add_member("editor"))
    yield opened
    await context.close()


async def start_from_the_tab(page: Any, dataset: str, target: str, concurrency: int) -> str:
    """Fill the Evaluations tab's start form (`target`: an option's value); the new evaluation's id
    (its page is open)."""
    await page.goto("/prompts/fast/evaluations")
    form = page.get_by_role("form", name="Start an evaluation")
    await form.get_by_label("Dataset").select_option(dataset)
    await form.get_by_label("What to run").select_option(target)
    await form.get_by_label("Concurrency").fill(str(concurrency))
    async with page.expect_navigation():
        await form.get_by_role("button", name="Start evaluation").click()
    found = re.search(r"/prompts/fast/evaluations/([^/?#]+)$", page.url)
    assert found, page.url
    return found.group(1)


async def test_start_one_and_watch_it_reach_done(page: Any, evals: Evals) -> None:
    name = f"progress-{next(NAMES)}"
    with evals.client() as client:
        make_dataset(client, name, ["Hello", "world", "nope", "Hello"])
    slow = evals.versions["slow"]
    evaluation_id = await start_from_the_tab(page, name, f"version:{slow}", 1)

    count = page.locator("#eval-count")
    assert re.fullmatch(r"[0-3] of 4 cases", await count.inner_text())
    assert await page.locator("#eval-status").inner_text() in ("queued", "running")
    await page.wait_for_function(
        "() => /^[123] of 4 cases$/.test(document.getElementById('eval-count')?.textContent ?? '')"
    )
    assert 0 < await page.locator("#eval-progress").evaluate("bar => bar.value") < 4  # moving, not done
    await shot(page, "evaluation-running")

    await page.locator("#eval-status", has_text="done").wait_for(timeout=20_000)  # the page loads again
    assert await count.inner_text() == "4 of 4 cases"
    assert await page.locator("#pass-rate").inner_text() == "75 %"
    evaluators = page.get_by_role("table", name="Evaluators")
    assert re.search(r"says it\s+75 %\s+0\.75\s+0", await evaluators.inner_text())
    rows = page.locator("#cases tbody tr")
    assert await rows.count() == 4
    assert "failed" in await page.locator("#case-3").inner_text()
    assert "Hello, world!" in await page.locator("#case-1").inner_text()
    run_link = page.locator("#case-1").get_by_role("link", name="run")
    assert re.fullmatch(r"/logs/\w+", await run_link.get_attribute("href") or "")
    assert await page.get_by_role("button", name="Cancel").count() == 0
    await shot(page, "evaluation-done")

    await page.get_by_role("link", name="← Evaluations").click()
    row = page.locator(f"#evaluation-{evaluation_id}")
    text = await row.inner_text()
    assert f"v{slow}" in text and name in text and "done" in text and "75 %" in text
    assert re.search(r"\d+ ms / \d+ ms", text)
    await shot(page, "evaluations-tab")


async def test_cancel_then_rerun(page: Any, evals: Evals) -> None:
    name = f"cancel-{next(NAMES)}"
    with evals.client() as client:
        make_dataset(client, name, ["Hello", "Hello", "Hello"])
    stuck = evals.versions["stuck"]
    first = await start_from_the_tab(page, name, f"version:{stuck}", 1)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Cancel").click()
    assert page.url.endswith(f"/evaluations/{first}")
    assert await page.locator("#eval-status").inner_text() == "cancelled"
    assert await page.locator("#eval-error").count() == 0  # the status says it all
    assert await page.locator("#eval-count").inner_text() == "0 of 3 cases"
    await shot(page, "evaluation-cancelled")

    async with page.expect_navigation():
        await page.get_by_role("button", name="Re-run").click()
    second = page.url.rsplit("/", 1)[1]
    assert second != first
    assert await page.locator("#eval-status").inner_text() in ("queued", "running")
    assert f"v{stuck} on {name}" in await page.locator("#evaluation-title").inner_text()
    async with page.expect_navigation():
        await page.get_by_role("button", name="Cancel").click()
    assert await page.locator("#eval-status").inner_text() == "cancelled"


async def test_compare_shows_the_pass_to_fail_case_first(page: Any, evals: Evals) -> None:
    name = f"compare-{next(NAMES)}"
    with evals.client() as client:
        make_dataset(client, name, EXPECTED)
        ids = []
        for version in (evals.versions["worse"], 1):  # the newer version first: order must not matter
            started = client.post("/api/prompts/fast/evaluations", json={"dataset": name, "version": version})
            assert started.status_code == 202, started.text
            ids.append(started.json()["id"])
    worse, served = ids
    for evaluation_id in ids:  # the tab shows them finishing; wait on the evaluation's page
        await page.goto(f"/prompts/fast/evaluations/{evaluation_id}")
        await page.locator("#eval-status", has_text="done").wait_for()

    await page.goto("/prompts/fast/evaluations")
    await page.locator(f"#evaluation-{worse} input[type=checkbox]").check()
    await page.locator(f"#evaluation-{served} input[type=checkbox]").check()
    async with page.expect_navigation():
        await page.get_by_role("button", name="Compare selected").click()
    assert "/prompts/fast/evaluations/compare?" in page.url

    side = page.get_by_role("table", name="Side by side")
    heads = await side.locator("thead th").all_inner_texts()
    assert heads[1].startswith("v1") and "baseline" in heads[1]
    assert heads[2].startswith(f"v{evals.versions['worse']}")
    assert re.search(r"Pass rate\s+33 %\s+33 %", await side.inner_text())
    assert re.search(r"says it pass rate · mean\s+33 % · 0\.33\s+33 % · 0\.33", await side.inner_text())
    assert "1 went from pass to fail" in await page.locator("#change-counts").inner_text()

    rows = page.locator("#case-changes tbody tr")
    first = rows.nth(0)
    assert await first.get_attribute("id") == "compare-case-3"
    assert "change-regressed" in (await first.get_attribute("class") or "")
    assert "pass → fail" in await first.inner_text() and "Goodbye" in await first.inner_text()
    assert [await rows.nth(i).get_attribute("id") for i in range(3)] == [
        "compare-case-3",
        "compare-case-1",
        "compare-case-2",
    ]
    background = await first.locator("td").first.evaluate("td => getComputedStyle(td).backgroundColor")
    assert background != "rgba(0, 0, 0, 0)"  # highlighted
    await shot(page, "evaluations-compare")

    async with page.expect_navigation():
        await side.get_by_role("link", name="use as baseline").click()
    assert (await page.locator("#case-changes tbody tr").first.get_attribute("id")) == "compare-case-1"


def test_the_start_form_refuses_what_it_cannot_run(evals: Evals) -> None:
    """Without a browser: a refused start shows the tab again with the message and the choices
    kept; a viewer sees no start form and cannot post one; one evaluation cannot be compared."""
    console = evals.console
    with console.session_client(console.add_member("editor")) as (client, csrf):
        answer = client.post(
            "/prompts/fast/evaluations",
            data={"csrf_token": csrf, "dataset": "no-such", "target": "version:1", "concurrency": "2"},
        )
        assert answer.status_code == 404 and "no-such" in answer.text
        assert 'value="2"' in answer.text
        answer = client.post(
            "/prompts/fast/evaluations",
            data={"csrf_token": csrf, "dataset": "x", "target": "version:1", "concurrency": "99"},
        )
        assert answer.status_code == 422 and "concurrency: a whole number from 1 to 32" in answer.text
        answer = client.get("/prompts/fast/evaluations/compare", params={"ids": "only-one"})
        assert answer.status_code == 422 and "Tick 2 to 10 evaluations" in answer.text
        assert client.get("/prompts/fast/evaluations/nope").status_code == 404
    with console.session_client(console.add_member("viewer")) as (client, csrf):
        tab = client.get("/prompts/fast/evaluations")
        assert tab.status_code == 200 and "Start an evaluation" not in tab.text
        refused = client.post(
            "/prompts/fast/evaluations", data={"csrf_token": csrf, "dataset": "x", "target": "version:1"}
        )
        assert refused.status_code == 403


async def test_the_editors_unsaved_draft_can_be_evaluated(page: Any, evals: Evals) -> None:
    name = f"draft-{next(NAMES)}"
    with evals.client() as client:
        make_dataset(client, name, ["Goodbye", "Hello"])
        saved = len(client.get("/api/prompts/fast").json()["versions"])
    await page.goto("/prompts/fast")
    await page.get_by_label("Model name").fill("worse")  # answers "Goodbye"
    await page.locator("#draft-bar").wait_for()  # kept in this browser, not saved

    await page.goto("/prompts/fast/evaluations")
    form = page.get_by_role("form", name="Start an evaluation")
    await form.get_by_label("Dataset").select_option(name)
    await form.get_by_label("What to run").select_option("draft")
    await form.get_by_role("button", name="Start evaluation").click()
    await page.wait_for_url(re.compile(r"/prompts/fast/evaluations/\w+$"))
    assert f"draft on {name}" in await page.locator("#evaluation-title").inner_text()
    await page.locator("#eval-status", has_text="done").wait_for()
    assert await page.locator("#pass-rate").inner_text() == "50 %"
    assert "Goodbye" in await page.locator("#case-1").inner_text()
    with evals.client() as client:
        assert len(client.get("/api/prompts/fast").json()["versions"]) == saved  # nothing saved
