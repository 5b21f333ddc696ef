"""Console fixtures: a live server (SQLite) with an owner and the example prompt, Debian's
Chromium through Playwright, and pages already signed in.

Browser tests are `async def` tests on pytest-asyncio's session event loop, using
Playwright's async API (see tests/support/browser.py for why not the sync one).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from promptdeck.store.console_members import MemberStore
from tests.conftest import IN_CI, make_settings, seed
from tests.support.browser import DESKTOP, launch_chromium
from tests.support.console_sign_in import signed_in_client
from tests.support.fake_openai import FakeOpenAI, deck_over, sqlite_url
from tests.support.live_server import LiveServer, start_server

PASSWORD = "correct horse battery"


@dataclass
class Console:
    """A running server with a workspace, an admin key and the example deployment; members
    are added per test so tests do not share sign-in state."""

    live: LiveServer
    admin_key: str
    workspace_id: str
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.live.url

    def add_member(self, role: str = "owner", must_change_password: bool = False) -> str:
        """A new member with PASSWORD; returns their email."""
        email = f"{role}{next(self._numbers)}@example.com"

        async def create() -> None:
            await MemberStore(self.live.services.db).create(
                self.workspace_id, email, PASSWORD, role, must_change_password=must_change_password
            )

        self.live.call(create)
        return email

    @contextmanager
    def session_client(self, email: str, password: str = PASSWORD) -> Iterator[tuple[httpx.Client, str]]:
        """An httpx client signed in through the sign-in form, and the session's CSRF token."""
        with signed_in_client(self.url, email, password) as signed_in:
            yield signed_in


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp: Path = tmp_path_factory.mktemp("console")
    settings = make_settings(f"sqlite+aiosqlite:///{tmp / 'promptdeck.db'}", tmp, writer_flush_seconds=0.05)
    workspace_id, key = seed(settings)
    live = start_server(settings)
    yield Console(live, key, workspace_id)
    live.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    started = await launch_chromium()
    if isinstance(started, str):
        if IN_CI:
            pytest.fail(f"CI must run the browser tests: {started}")
        pytest.skip(started)
    playwright, chromium = started
    yield chromium
    await chromium.close()
    await playwright.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser: Any, console: Console) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) at 1280x800, with the console's URL as base."""
    context = await browser.new_context(viewport=DESKTOP, base_url=console.url)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await context.close()


async def sign_in(page: Any, email: str, password: str = PASSWORD, next_path: str = "/settings") -> None:
    """Fill and send the sign-in form; waits for the page that answers."""
    await page.goto(f"/sign-in?next={next_path}")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()


@pytest_asyncio.fixture(loop_scope="session")
async def signed_in_page(new_page: Any, console: Console) -> Any:
    """A page signed in as a new owner, showing /settings."""
    await sign_in(new_page, console.add_member("owner"))
    assert new_page.url.endswith("/settings"), new_page.url
    return new_page


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def upstream_console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    """A console on each database whose `openai/...` models are answered by a fake upstream
    (tests/support/fake_openai.py), with the deployment `fast` (variants `default` and `beta`,
    inputs `text` and `audience`): for screens that need real runs."""
    tmp: Path = tmp_path_factory.mktemp(f"upstream-console-{request.param}")
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    url = postgres.new_database() if postgres else sqlite_url(tmp)
    with FakeOpenAI() as upstream, deck_over(upstream.url, url, tmp) as deck:
        yield Console(deck.live, deck.admin_key, deck.workspace_id)


@pytest_asyncio.fixture(loop_scope="session")
async def upstream_page(browser: Any, upstream_console: Console) -> AsyncIterator[Any]:
    """A fresh browser page (1280x800) on `upstream_console`, signed in as a new editor."""
    context = await browser.new_context(viewport=DESKTOP, base_url=upstream_console.url)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await sign_in(page, upstream_console.add_member("editor"))
    yield page
    await context.close()
