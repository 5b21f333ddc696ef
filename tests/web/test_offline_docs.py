"""The API's interactive docs (/docs) work without network access: every asset comes
from promptdeck itself, so a browser that may reach only loopback still shows the operations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest_asyncio

from tests.support.browser import DESKTOP, shot
from tests.web.conftest import Console

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@pytest_asyncio.fixture(loop_scope="session")
async def offline_page(browser: Any, console: Console) -> AsyncIterator[tuple[Any, list[str]]]:
    """A page that may reach only loopback; yields it and the URLs it tried beyond."""
    context = await browser.new_context(viewport=DESKTOP, base_url=console.url)
    blocked: list[str] = []

    async def only_loopback(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOOPBACK:
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_loopback)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page, blocked
    await context.close()


async def test_swagger_ui_lists_the_operations_offline(offline_page: tuple[Any, list[str]]) -> None:
    page, blocked = offline_page
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    await page.goto("/docs")
    invoke = page.locator(".opblock-summary-path", has_text="/v1/prompt/invoke").first
    await invoke.wait_for()
    paths = await page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/v1/prompt/invoke", "/v1/execute-prompt", "/v1/chat/completions"} <= {
        path.replace("\u200b", "") for path in paths
    }, paths
    await invoke.click()  # an operation opens: the UI is live, not just painted
    await page.locator(".opblock.is-open").first.wait_for()
    assert blocked == [], f"the docs page reached beyond loopback: {blocked}"
    assert errors == [], errors  # no asset missing, nothing refused by the page's CSP
    await shot(page, "api-docs")


def test_there_is_one_docs_page(console: Console) -> None:
    """ReDoc is not served: it loads its logo from its vendor's site."""
    assert httpx.get(console.url + "/redoc").status_code == 404
    assert httpx.get(console.url + "/docs/assets/swagger-ui-bundle.js").status_code == 200
