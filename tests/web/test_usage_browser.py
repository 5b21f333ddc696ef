"""Usage and Users in a real browser: charts with data written through the server's run writer
(two months of a busy workspace's shape, from bench/run_log_data.py) plus calls through the
Fetch Hive API; switching the grouping, tooltips, and a chart link that opens the logs.
Saves the usage, users and user screenshots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from bench.run_log_data import DEPLOYMENTS, RunFactory, Shape

from tests.conftest import Deck
from tests.support.browser import DESKTOP, shot
from tests.support.fake_openai import INPUTS, FakeOpenAI, deck_over, push_prompt
from tests.web.conftest import Console, sign_in

SYNTHETIC_RUNS = 4_000


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A SQLite server with SYNTHETIC_RUNS runs over the last 60 days and a few real calls."""
    tmp: Path = tmp_path_factory.mktemp("usage-browser")
    with FakeOpenAI() as upstream, deck_over(upstream.url, f"sqlite+aiosqlite:///{tmp / 'db'}", tmp) as deck:
        for name, *_ in DEPLOYMENTS:  # the console groups usage by deployments that exist only
            if name != "summarize":  # the example prompt's, there already
                push_prompt(deck.url, deck.admin_key, name, "openai/fast")
        write_synthetic_runs(deck, SYNTHETIC_RUNS)
        with deck.client() as client:
            for user in ("ada@example.com", "ada@example.com", "grace@example.com"):
                body = {"deployment": "fast", "inputs": INPUTS, "user": user, "metadata": {"team": "growth"}}
                assert client.post("/v1/prompt/invoke", json=body).status_code == 200
        deck.flush()
        yield Console(deck.live, deck.admin_key, deck.workspace_id)


def write_synthetic_runs(deck: Deck, total: int) -> None:
    factory = RunFactory(Shape(deck.workspace_id, datetime.now(UTC)), total)

    async def write() -> None:
        for segment in factory.segments(500):
            for record in segment:
                await deck.services.writer.put(record)

    asyncio.run_coroutine_threadsafe(write(), deck.live.loop).result(timeout=120)
    deck.flush()


@pytest_asyncio.fixture(loop_scope="session")
async def usage_page(browser: Any, busy: Console) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=DESKTOP, base_url=busy.url)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await sign_in(page, busy.add_member("viewer"), next_path="/usage")
    yield page
    await context.close()


async def test_usage_charts_group_by_and_lead_to_the_logs(usage_page: Any) -> None:
    page = usage_page
    assert urlsplit(page.url).path == "/usage"
    await page.get_by_label("Range").select_option("7d")  # applied at once, no button needed
    await page.wait_for_url("**/usage?*range=7d*")
    assert await page.locator(".chart-card").count() == 4
    runs_card = page.locator(".chart-card", has_text="Runs")
    # hovering a bucket's bar shows the bucket's tooltip. (Its hit area's middle, which
    # Playwright would point at, is under today's bar once the day is half over.) Yesterday:
    # a whole day of runs, whatever the time.
    columns = runs_card.locator(".chart-wide svg a.hit")
    yesterday = await columns.nth(await columns.count() - 2).get_attribute("data-col")
    await runs_card.locator(f".chart-wide svg a.mark[data-col='{yesterday}']").first.hover()
    tip = runs_card.locator(".chart-tip")
    await tip.wait_for(state="visible")
    text = await tip.inner_text()
    assert "support-answer:" in text and "errors:" in text
    await shot(page, "usage")

    await page.get_by_label("Group by").select_option("model")
    await page.wait_for_url("**group_by=model*")
    legend = page.locator(".chart-card", has_text="Runs").locator(".legend")
    assert "openai/gpt-4o-mini" in await legend.inner_text()

    await page.get_by_label("Group by").select_option("metadata")
    await page.get_by_label("Metadata key").fill("plan")
    async with page.expect_navigation():
        await page.get_by_label("Metadata key").press("Enter")
    assert "pro" in await page.locator(".chart-card", has_text="Runs").locator(".legend").inner_text()

    # keyboard: focus a bucket, its tooltip shows; Enter opens its runs in the logs
    await page.get_by_label("Group by").select_option("deployment")
    await page.wait_for_url("**group_by=deployment*")
    runs_card = page.locator(".chart-card", has_text="Runs")
    tip = runs_card.locator(".chart-tip")
    mark = runs_card.locator(".chart-wide svg a.mark[href*='deployment=']").last
    href = await mark.get_attribute("href")
    await mark.focus()
    assert await tip.is_visible()
    async with page.expect_navigation():
        await mark.click()
    query = parse_qs(urlsplit(page.url).query)
    assert urlsplit(page.url).path == "/logs" and query["range"] == ["custom"] and "deployment" in query
    assert page.url.endswith(href or "")


async def test_users_and_one_user(usage_page: Any) -> None:
    page = usage_page
    await page.goto("/users?sort=runs&order=desc")
    first = page.locator("td.user-name a").first
    assert (await first.inner_text()) == "user-00000"  # the Zipf head
    await shot(page, "users")
    await page.keyboard.press("/")
    await page.keyboard.type("grace")
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert await page.locator("td.user-name a").all_inner_texts() == ["grace@example.com"]
    await page.goto("/users/user-00000")
    assert await page.locator(".chart-card").count() == 2
    await shot(page, "user")
    async with page.expect_navigation():
        await page.get_by_role("link", name="View runs in the logs").click()
    assert parse_qs(urlsplit(page.url).query)["user"] == ["user-00000"]
