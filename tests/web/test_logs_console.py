"""The Logs screens in a real browser, on SQLite and PostgreSQL, over runs made through the
Fetch Hive invoke API (answered by the fake upstream): filters by deployment, variant, status,
end user and metadata, the next page, live tail, a run's page and its feedback form; and over
plain HTTP, bad filters, roles and CSRF."""

from __future__ import annotations

import html
import itertools
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from promptdeck.domain.runs import RunRecord
from tests.support.browser import shot
from tests.support.fake_openai import INPUTS
from tests.support.invoking import invoke
from tests.web.conftest import Console

TAGS = itertools.count()
ANSWER = "Hello, world!"  # the fake upstream's default answer


def tag() -> str:
    """A metadata value no other test's runs carry (the server is shared)."""
    return f"t{next(TAGS)}-{uuid.uuid4().hex[:6]}"


def flush(console: Console) -> None:
    console.live.call(console.live.services.writer.flush)


def logged(console: Console, request_id: str) -> dict[str, Any]:
    """The run as the admin API gives it (with its feedback)."""
    answer = httpx.get(
        f"{console.url}/api/runs/{request_id}", headers={"Authorization": f"Bearer {console.admin_key}"}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def shown(page: Any) -> list[str]:
    return [await row.get_attribute("data-id") for row in await page.locator("#runs tr.run-row").all()]


async def test_filters_find_runs_by_metadata_status_user_and_variant(
    upstream_page: Any, upstream_console: Console
) -> None:
    page, mark = upstream_page, tag()
    invoke(upstream_console, metadata={"suite": mark, "customer": "acme"}, user=f"ann-{mark}", expect=200)
    invoke(
        upstream_console,
        metadata={"suite": mark, "customer": "globex"},
        user=f"bob-{mark}",
        variant="beta",
        expect=200,
    )
    invoke(
        upstream_console,
        inputs={},
        metadata={"suite": mark, "customer": "acme"},
        user=f"bob-{mark}",
        expect=422,
    )
    flush(upstream_console)

    await page.goto("/logs")
    await page.locator(f'#meta-keys option[value="suite={mark}"]').wait_for(state="attached")  # suggested
    await page.get_by_label("Metadata condition").fill(f"suite={mark}")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Apply").click()
    assert parse_qs(urlsplit(page.url).query) == {"meta": [f"suite={mark}"]}  # a link to share
    assert len(await shown(page)) == 3

    await page.get_by_role("button", name="Add a condition").click()
    await page.get_by_label("Metadata condition").nth(2).fill("customer=acme")
    await page.get_by_label("Status").select_option("success")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Apply").click()
    rows = page.locator("#runs tr.run-row")
    assert await rows.count() == 1
    row = " ".join((await rows.first.inner_text()).split())
    assert f"ann-{mark}" in row and "fast / default v1" in row and "success" in row and "openai/fast" in row

    await page.goto(f"/logs?meta=suite%3D{mark}&status=error")
    assert await rows.count() == 1 and "error" in await rows.first.inner_text()
    await page.goto(f"/logs?meta=suite%3D{mark}&user=bob-{mark}&variant=beta&deployment=fast")
    assert await rows.count() == 1 and "beta" in await rows.first.inner_text()
    assert await page.get_by_label("Variant").input_value() == "beta"  # the form shows the filters
    await page.goto(f"/logs?meta=suite%3D{mark}&deployment=summarize")
    assert await rows.count() == 0 and "No runs match these filters" in await page.content()

    await page.goto(f"/logs?meta=suite%3D{mark}&range=1h")
    assert await rows.count() == 3
    await shot(page, "logs")


async def test_next_page_and_live_tail(upstream_page: Any, upstream_console: Console) -> None:
    page, mark = upstream_page, tag()
    for _ in range(52):
        invoke(upstream_console, metadata={"batch": mark}, expect=200)
    flush(upstream_console)
    await page.goto(f"/logs?meta=batch%3D{mark}")
    first = await shown(page)
    assert len(first) == 50
    async with page.expect_navigation():
        await page.get_by_role("link", name="Older runs").click()
    second = await shown(page)
    assert len(second) == 2 and not set(first) & set(second)
    assert await page.get_by_role("link", name="Older runs").count() == 0
    await page.get_by_role("link", name="Newest").click()
    await page.wait_for_url(f"**/logs?meta=batch%3D{mark}")

    await page.evaluate("window.notReloaded = true")
    await page.get_by_label("Live tail").check()
    await page.get_by_text("Live: 0 new runs").wait_for()
    answer = invoke(upstream_console, metadata={"batch": mark}, user=f"tail-{mark}", expect=200)
    newest = answer.json()["request_id"]
    invoke(upstream_console, metadata={"batch": "someone else"}, expect=200)  # not matching: never shown
    top = page.locator("#runs tr.run-row").first
    await top.filter(has_text=f"tail-{mark}").wait_for(timeout=15_000)
    assert await page.evaluate("window.notReloaded === true")
    assert len(await shown(page)) == 51
    assert newest  # the run that arrived is the one shown on top
    await page.get_by_text("Live: 1 new run").wait_for()
    await page.get_by_label("Live tail").uncheck()


async def test_a_run_page_shows_its_parts_and_takes_feedback(
    upstream_page: Any, upstream_console: Console
) -> None:
    page, mark = upstream_page, tag()
    request_id = str(
        invoke(
            upstream_console, metadata={"suite": mark, "plan": "pro"}, user=f"cara-{mark}", expect=200
        ).json()["request_id"]
    )
    flush(upstream_console)
    await page.goto(f"/logs?meta=suite%3D{mark}")
    async with page.expect_navigation():
        await page.locator("#runs tr.run-row td", has_text="openai/fast").click()  # the row opens the run
    assert "/logs/" in page.url
    main = page.locator("main")
    text = await main.inner_text()
    for part in (
        INPUTS["text"],  # inputs
        f"Summarize for kids: {INPUTS['text']}",  # the rendered messages
        ANSWER,  # output
        request_id,
        "fetchhive",
        "openai/fast",
        f"cara-{mark}",
    ):
        assert part in text, part
    attempts = page.locator("section", has=page.get_by_role("heading", name="Attempts"))
    assert "openai" in await attempts.inner_text() and "success" in await attempts.inner_text()
    usage = " ".join((await page.locator("section", has_text="Usage, cost, timing").inner_text()).split())
    assert "Input tokens 11" in usage and "Output tokens 4" in usage  # the fake upstream's usage
    assert await page.get_by_role("link", name=f"cara-{mark}").get_attribute("href") == f"/users/cara-{mark}"
    assert await page.get_by_role("link", name="fast v1").get_attribute("href") == "/prompts/fast?version=1"

    form = page.locator("#feedback-form")
    await form.get_by_label("Score (0 to 1)").fill("1.5")
    await form.get_by_role("button", name="Add feedback").click()
    await form.locator(".form-error", has_text="score: expected a number up to 1.0; got 1.5").wait_for()
    await form.get_by_label("up", exact=True).check()
    await form.get_by_label("Score (0 to 1)").fill("0.9")
    await form.get_by_label("Correction").fill("Hi there, world.")
    await form.get_by_role("button", name="Add feedback").click()
    item = page.locator("#feedback-list li").first
    await item.filter(has_text="Hi there, world.").wait_for()
    assert "thumbs up" in await item.inner_text() and "score 0.90" in await item.inner_text()
    await shot(page, "run-detail")
    run = logged(upstream_console, request_id)
    (stored,) = run["feedback"]
    assert stored["quality"] == 0.9 and stored["thumbs"] == "up" and stored["text"] == "Hi there, world."
    await page.reload()
    assert "Hi there, world." in await page.locator("#feedback-list").inner_text()  # kept

    async with page.expect_navigation():
        await page.get_by_role("link", name="plan").click()  # metadata keys lead to their runs
    assert parse_qs(urlsplit(page.url).query) == {"meta": ["plan=pro"]}
    assert run["id"] in await shown(page)


def test_bad_filters_are_explained_next_to_the_form(upstream_console: Console) -> None:
    cases = {
        "range=custom&since=yesterday": "since: expected an ISO 8601 time",
        "meta=%3Dacme": "meta: no key before '='",
        "meta=score%3Ehigh": "meta: score&gt; needs a number",
        "range=2w": "range: expected one of 1h, 24h, 7d, 30d, custom",
        "status=maybe&version=x": "status: expected one of success, error",
        "cursor=garbage": "cursor: not one this server gave out",
    }
    with upstream_console.session_client(upstream_console.add_member("viewer")) as (client, _):
        for query, message in cases.items():
            answer = client.get(f"/logs?{query}")
            assert answer.status_code == 422, query
            assert message.replace("'", "&#39;") in answer.text, (query, answer.text[-3000:])
            assert 'class="card filters"' in answer.text  # the form is still there to fix it
        kept = client.get("/logs?meta=%3Dacme&user=dora").text
        assert 'value="=acme"' in kept and 'value="dora"' in kept  # nothing typed is lost
        assert client.get("/logs/tail?after=soon").status_code == 422
        # the Usage screen's links give UTC times with a zone; the form shows them, ready to change
        shared = client.get("/logs?range=custom&since=2026-01-31T12:00:00Z&until=2026-02-01T00:00:00Z")
        assert shared.status_code == 200
        assert 'value="2026-01-31T12:00:00"' in shared.text and 'value="2026-02-01T00:00:00"' in shared.text


def test_roles_csrf_and_unknown_runs(upstream_console: Console) -> None:
    request_id = str(invoke(upstream_console, metadata={"suite": tag()}, expect=200).json()["request_id"])
    flush(upstream_console)
    with upstream_console.session_client(upstream_console.add_member("viewer")) as (viewer, csrf):
        run_page = viewer.get(f"/logs/{request_id}")
        assert run_page.status_code == 200 and request_id in run_page.text
        assert "feedback-form" not in run_page.text  # viewers read feedback, never give it
        refused = viewer.post(
            f"/api/runs/{request_id}/feedback", json={"score": 1}, headers={"X-CSRF-Token": csrf}
        )
        assert refused.status_code == 403
    with upstream_console.session_client(upstream_console.add_member("editor")) as (editor, csrf):
        assert "feedback-form" in editor.get(f"/logs/{request_id}").text
        forged = editor.post(f"/api/runs/{request_id}/feedback", json={"score": 1})
        assert forged.status_code == 403 and "X-CSRF-Token" in forged.json()["error"]["message"]
        missing = editor.get("/logs/no-such-run")
        assert missing.status_code == 404 and "no run &#39;no-such-run&#39;" in missing.text
    anonymous = httpx.get(upstream_console.url + "/logs?status=error", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/sign-in?next=/logs%3Fstatus%3Derror"


def test_a_run_still_queued_for_the_writer_has_its_page(upstream_console: Console) -> None:
    """`find_run` looks in the writer's queue too: the page of a run not yet written shows it."""
    record = RunRecord(upstream_console.workspace_id, "fetchhive", "fast", False, output="queued answer")
    writer = upstream_console.live.services.writer
    writer.pending[record.request_id] = record  # as the writer holds a run not inserted yet
    try:
        with upstream_console.session_client(upstream_console.add_member("viewer")) as (client, _):
            answer = client.get(f"/logs/{record.request_id}")
            assert answer.status_code == 200 and "queued answer" in answer.text
    finally:
        del writer.pending[record.request_id]


def ids_on(client: httpx.Client, url: str) -> set[str]:
    """The runs a logs page lists (its first page)."""
    answer = client.get(url)
    assert answer.status_code == 200, (url, answer.text[-2000:])
    return {part.split('"', 1)[0] for part in answer.text.split('data-id="')[1:]}


def group_href(usage_page: str, label: str) -> str:
    """The link of a group in the Usage page's table (the one around its label)."""
    found = re.search(rf'<a href="([^"]+)">{re.escape(label)}</a>', usage_page)
    assert found, f"no link for the group {label!r}"
    return html.unescape(found.group(1))


def test_model_and_provider_filters_and_the_usage_pages_links(upstream_console: Console) -> None:
    """`model` and `provider` narrow the logs (the form shows them), and a Usage group's link —
    by model, provider, variant or version — lists exactly that group's runs."""
    mark = tag()
    deployment, one, other = f"dep-{mark}", f"one-{mark}", f"two-{mark}"
    made = {
        name: RunRecord(
            upstream_console.workspace_id,
            "fetchhive",
            deployment,
            False,
            model=f"{provider}/{model}",
            provider=provider,
            variant=variant,
            version_number=version,
            output="ok",
        )
        for name, provider, model, variant, version in (
            ("big", one, "big", "default", 6),
            ("small", one, "small", "default", 6),
            ("elsewhere", other, "big", "canary", 7),
        )
    }
    writer = upstream_console.live.services.writer
    for record in made.values():

        async def put(record: RunRecord = record) -> None:
            await writer.put(record)

        upstream_console.live.call(put)
    flush(upstream_console)
    ids = {name: record.id for name, record in made.items()}

    with upstream_console.session_client(upstream_console.add_member("viewer")) as (client, _):
        assert ids_on(client, f"/logs?model={one}/big") == {ids["big"]}
        assert ids_on(client, f"/logs?provider={one}") == {ids["big"], ids["small"]}
        assert ids_on(client, f"/logs?provider={one}&model={other}/big") == set()
        assert ids_on(client, f"/logs?deployment={deployment}&version=7") == {ids["elsewhere"]}
        answer = client.get(f"/logs?model={one}/small&provider={one}&version=6")
        form = answer.text
        # every console answer says what it cost the server (bench/console_pages.py reads it)
        assert re.fullmatch(r"app;dur=\d+\.\d\d", answer.headers["server-timing"])
        assert "app;dur=" in client.get("/logs/no-such-run").headers["server-timing"]
        assert f'name="model" value="{one}/small"' in form
        assert f'name="provider" value="{one}"' in form and 'name="version" value="6"' in form
        tail_query = html.unescape(form.split('data-query="', 1)[1].split('"', 1)[0])
        assert parse_qs(tail_query) == {"model": [f"{one}/small"], "provider": [one], "version": ["6"]}
        tail = client.get(f"/logs/tail?after={quote(made['small'].created_at.isoformat())}&{tail_query}")
        assert tail.status_code == 200 and ids["small"] in tail.text and ids["big"] not in tail.text

        for group_by, label, expected in (
            ("model", f"{one}/big", {"big"}),
            ("provider", one, {"big", "small"}),
            ("variant", f"{deployment}/canary", {"elsewhere"}),
            ("version", f"{deployment}@v6", {"big", "small"}),
        ):
            usage = client.get(f"/usage?range=24h&group_by={group_by}")
            assert usage.status_code == 200, usage.text[-2000:]
            href = group_href(usage.text, label)
            assert ids_on(client, href) == {ids[name] for name in expected}, (group_by, href)
