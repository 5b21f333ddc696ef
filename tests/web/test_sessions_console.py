"""A session in a real browser, on SQLite and PostgreSQL: the Logs page filters by session, a
run's page links its session, and the session's page reads as the conversation did (each run's
last user message, or its inputs, then its output or error, oldest first) under its totals."""

from __future__ import annotations

import itertools
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from tests.support.browser import shot
from tests.support.fake_openai import INPUTS
from tests.support.invoking import invoke
from tests.web.conftest import Console

HEADER = "X-Promptdeck-Session-Id"
ANSWER = "Hello, world!"  # the fake upstream's default answer
NUMBERS = itertools.count()


def new_session() -> str:
    """A session id no other test's runs carry (the server is shared)."""
    return f"chat-{next(NUMBERS)}-{uuid.uuid4().hex[:8]}"


def converse(console: Console, session_id: str) -> list[str]:
    """A conversation of three turns through the OpenAI dialect, a templated Fetch Hive run and a
    refused one (a required input missing), all in `session_id`; the runs' ids, in order."""
    headers = {"Authorization": f"Bearer {console.admin_key}", HEADER: session_id}
    said: list[dict[str, str]] = []
    ids = []
    with httpx.Client(base_url=console.url, headers=headers, timeout=30) as client:
        for question in ("What is a fox?", "And a lazy dog?", "Which one is quicker?"):
            said.append({"role": "user", "content": question})
            body = {"model": "fast", "messages": said, "variables": INPUTS}
            answer = client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            said.append({"role": "assistant", "content": answer.json()["choices"][0]["message"]["content"]})
            ids.append(answer.headers["x-request-id"])
    hive = invoke(console, metadata={"session_id": session_id, "step": "summary"}, expect=200)
    ids.append(hive.json()["request_id"])
    invoke(console, inputs={"text": "no audience"}, metadata={"session_id": session_id}, expect=422)
    console.live.call(console.live.services.writer.flush)
    return ids


def session_runs(console: Console, session_id: str) -> list[dict[str, Any]]:
    """The session's runs as `GET /api/sessions/{id}` gives them."""
    answer = httpx.get(
        f"{console.url}/api/sessions/{session_id}", headers={"Authorization": f"Bearer {console.admin_key}"}
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


async def test_the_logs_filter_by_session_and_a_run_links_its_session(
    upstream_page: Any, upstream_console: Console
) -> None:
    page, session_id = upstream_page, new_session()
    converse(upstream_console, session_id)
    invoke(upstream_console, metadata={"session_id": new_session()}, expect=200)  # another session
    upstream_console.live.call(upstream_console.live.services.writer.flush)

    await page.goto("/logs")
    await page.get_by_label("Session").fill(session_id)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Apply").click()
    assert parse_qs(urlsplit(page.url).query) == {"session": [session_id]}
    assert await page.locator("#runs tr.run-row").count() == 5
    assert await page.get_by_label("Session").input_value() == session_id
    await shot(page, "logs-session-filter")

    async with page.expect_navigation():
        await page.locator("#runs tr.run-row .run-link").first.click()
    link = page.locator("#session-link")
    assert await link.text_content() == session_id
    async with page.expect_navigation():
        await link.click()
    assert urlsplit(page.url).path == f"/sessions/{quote(session_id, safe='')}"


async def test_a_sessions_page_reads_as_the_conversation(
    upstream_page: Any, upstream_console: Console
) -> None:
    page, session_id = upstream_page, new_session()
    ids = converse(upstream_console, session_id)
    await page.goto(f"/sessions/{quote(session_id, safe='')}")

    assert await page.locator("h1").text_content() == session_id
    totals = page.get_by_label("Session totals")
    assert "Runs5" in (await totals.text_content() or "").replace("\n", "").replace(" ", "")
    assert "1 failed" in (await totals.text_content() or "")
    assert "fast (5)" in (await page.locator("#session-when").text_content() or "")

    turns = page.locator("#turns > li")
    assert await turns.count() == 5
    logged = session_runs(upstream_console, session_id)
    assert [run["request_id"] for run in logged[:4]] == ids
    assert [await turn.get_attribute("data-id") for turn in await turns.all()] == [
        run["id"] for run in logged
    ]
    first, third, summary, refused = (turns.nth(i) for i in (0, 2, 3, 4))
    assert "What is a fox?" in (await first.locator(".turn-said").text_content() or "")
    assert "Which one is quicker?" in (await third.locator(".turn-said").text_content() or "")
    assert ANSWER in (await third.locator(".turn-answered").text_content() or "")
    said = await summary.locator(".turn-said").text_content() or ""
    assert "Summarize for kids: The quick brown fox" in said  # the template, filled in
    assert "turn-error" in (await refused.get_attribute("class") or "")
    assert "error" in (await refused.locator(".turn-answered .role").text_content() or "")

    async with page.expect_navigation():
        await first.locator(".run-link").click()
    assert urlsplit(page.url).path == f"/logs/{logged[0]['id']}"
    await page.go_back()
    await shot(page, "session")


async def test_an_unknown_session_is_a_404_page(upstream_page: Any) -> None:
    answer = await upstream_page.goto("/sessions/never-seen")
    assert answer.status == 404
    assert "No runs in a session" in (await upstream_page.locator("#no-session").text_content() or "")
