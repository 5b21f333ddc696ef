"""The console's first hour (issue 17), in a real browser against a live server: what a newcomer
met on a fresh install. A new API key shown in view and focused; usage grouped by the
deployments that exist (typo'd names under one "unknown"); a cost chart over free runs that
says so; no broken variant links for a Vellum run; a favicon; error messages in the logs; the
forced password change returning to the page asked for (and never to another site); a model
picker that still takes any name. Saves the first-hour-* screenshots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import expect

from promptdeck.domain.runs import utcnow
from promptdeck.domain.usage_query import parse_usage_query
from tests.support.browser import DESKTOP, SCREENSHOTS, shot
from tests.support.fake_openai import FakeOpenAI, deck_over, push_prompt, sqlite_url
from tests.support.invoking import INPUTS, invoke
from tests.web.conftest import PASSWORD, Console, sign_in

TYPOS = ("nope", "sumarize")


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A fresh server (deployments `fast`, `brief` and `summarize`) after a newcomer's first
    calls: `fast` twice (its model has no known price: the runs cost $0) and `brief` once, two
    typo'd deployment names (runs that failed: no such deployment), and a Vellum call without a
    release tag (`latest`)."""
    tmp: Path = tmp_path_factory.mktemp("first-hour")
    with FakeOpenAI() as upstream, deck_over(upstream.url, sqlite_url(tmp), tmp) as deck:
        push_prompt(deck.url, deck.admin_key, "brief", "openai/fast")
        invoke(deck, "brief", expect=200)
        invoke(deck, "fast", expect=200)
        invoke(deck, "fast", expect=200, user="ada@example.com")
        for name in TYPOS:
            invoke(deck, name, expect=404)
        vellum_inputs = [{"type": "STRING", "name": k, "value": v} for k, v in INPUTS.items()]
        answer = httpx.post(
            f"{deck.url}/v1/execute-prompt",
            json={"prompt_deployment_name": "fast", "inputs": vellum_inputs},
            headers={"X-API-KEY": deck.admin_key},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        deck.flush()
        yield Console(deck.live, deck.admin_key, deck.workspace_id)


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_page(browser: Any, first_hour: Console) -> AsyncIterator[Any]:
    """A page at 1280x800 with no cookies, which fails the test on any 404 it loads."""
    context = await browser.new_context(viewport=DESKTOP, base_url=first_hour.url)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    yield page
    await context.close()
    assert not missing, f"404s: {missing}"


async def owner_page(page: Any, console: Console, next_path: str = "/settings") -> Any:
    await sign_in(page, console.add_member("owner"), next_path=next_path)
    return page


async def admin_get(page: Any, console: Console, path: str, **params: str) -> Any:
    """An admin API answer's JSON, read with the console's admin key (not the page's session)."""
    headers = {"Authorization": f"Bearer {console.admin_key}"}
    answer = await page.request.get(path, params=params, headers=headers)
    assert answer.ok, await answer.text()
    return await answer.json()


async def runs(page: Any, console: Console, **params: str) -> list[dict[str, Any]]:
    return list((await admin_get(page, console, "/api/runs", **params))["data"])


async def viewport_shot(page: Any, name: str) -> Path:
    """What the member sees without scrolling (not the whole page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


# 1 ─ a new API key is in view and focused ────────────────────────────────────────────────────


async def test_a_new_api_key_is_shown_in_view_focused_and_selected(
    fresh_page: Any, first_hour: Console
) -> None:
    page = await owner_page(fresh_page, first_hour)
    await page.get_by_label("Name").fill("production app")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Create key").click()
    secret = page.locator("#revealed")
    await secret.wait_for()
    await expect(secret).to_be_focused()
    box = await secret.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= DESKTOP["height"], box
    value = (await secret.inner_text()).strip()
    assert value.startswith("pd_") or len(value) > 20, value
    assert await page.evaluate("getSelection().toString().trim()") == value  # Ctrl+C copies it
    await viewport_shot(page, "first-hour-new-key")


# 2, 3 ─ usage: only deployments that exist; a cost chart over free runs ────────────────────────


async def test_usage_groups_typos_as_unknown_and_says_free_runs_cost_nothing(
    fresh_page: Any, first_hour: Console
) -> None:
    page = await owner_page(fresh_page, first_hour, "/usage")
    runs_card = page.locator(".chart-card", has_text="Runs")
    legend = await runs_card.locator(".legend li").all_inner_texts()
    assert {"fast", "brief", "unknown"} <= set(legend), legend
    assert not set(TYPOS) & set(legend), legend
    table = await page.locator("table.data tbody tr td:first-child").all_inner_texts()
    assert [t.strip() for t in table] == ["fast", "brief", "unknown"], table
    unknown_row = page.locator("table.data tbody tr", has_text="unknown")
    assert (await unknown_row.locator("td.num").first.inner_text()).strip() == "2"

    cost = page.locator(".chart-card", has_text="Cost (USD)")
    said = await cost.locator(".chart-empty").first.text_content()
    assert said == "These runs cost $0 (free or unpriced models)", said
    assert "No runs" not in (await cost.inner_text())
    await shot(page, "first-hour-usage")

    # the admin API keeps every name callers sent (docs/console.md, Usage)
    api = await admin_get(page, first_hour, "/api/usage", group_by="deployment")
    assert set(TYPOS) <= {s["group"] for s in api["series"]}

    # a truly empty range still says so
    await page.goto("/usage?range=custom&from=2020-01-01&to=2020-01-31")
    assert "No runs in this range" in await page.locator(".empty-state").inner_text()


@pytest.mark.parametrize("percentiles", ["points", "totals"])
def test_unknown_deployments_stay_apart_from_the_other_values(first_hour: Console, percentiles: str) -> None:
    """Past the limit, the known names not shown are `other`; the unknown names stay one series
    of their own, and every series adds up to the total, latency bins included."""
    query = parse_usage_query(
        start=None,
        end=None,
        bucket="hour",
        group_by="deployment",
        deployment=None,
        limit="1",
        now=utcnow(),
        percentiles=percentiles,
    )
    usage = first_hour.live.services.usage

    async def read() -> dict[str, Any]:
        return await usage.usage(first_hour.workspace_id, query, known_deployments_only=True)

    answer = first_hour.live.call(read)
    groups = [(s["group"], s["other"], s["totals"]["runs"]) for s in answer["series"]]
    assert groups == [("fast", False, 3), ("other", True, 1), (None, False, 2)], groups
    assert answer["total"]["totals"]["runs"] == 6
    unknown = answer["series"][2]["totals"]
    assert unknown["errors"] == 2 and unknown["latency_p50_ms"] is not None


# 4 ─ a Vellum run's variant links to a page that exists ─────────────────────────────────────────


async def test_a_vellum_runs_links_all_lead_to_pages_that_exist(fresh_page: Any, first_hour: Console) -> None:
    page = await owner_page(fresh_page, first_hour)
    (vellum,) = [r for r in await runs(page, first_hour, deployment="fast") if r["dialect"] == "vellum"]
    assert vellum["variant"] == "default"  # the release tag LATEST: the deployment's default variant
    await page.goto(f"/logs/{vellum['id']}")
    facts = page.locator(".facts").first
    variant = facts.locator("dt:text-is('Variant') + dd")
    assert (await variant.inner_text()).strip() == "default"
    await shot(page, "first-hour-vellum-run")
    hrefs = await page.eval_on_selector_all("a[href^='/']", "links => links.map(a => a.getAttribute('href'))")
    assert "/deployments/fast?variant=default#variant" in hrefs, hrefs
    for href in {h for h in hrefs if not h.startswith("/sign-out")}:
        answer = await page.request.get(href)
        assert answer.status == 200, (href, answer.status)

    # a run of a name that is no deployment: no link to a deployment page that cannot exist
    (typo,) = await runs(page, first_hour, deployment="nope")
    await page.goto(f"/logs/{typo['id']}")
    deployment = page.locator(".facts").first.locator("dt:text-is('Deployment') + dd")
    assert "(no such deployment)" in await deployment.inner_text()
    assert await deployment.locator("a[href^='/deployments/']").count() == 0


# 5 ─ a favicon ───────────────────────────────────────────────────────────────────────────────────


async def test_every_page_has_a_favicon(fresh_page: Any, first_hour: Console) -> None:
    page = fresh_page
    await page.goto("/sign-in")
    icons = await page.eval_on_selector_all("link[rel=icon]", "links => links.map(l => l.href)")
    assert icons
    for href in [*icons, f"{first_hour.url}/favicon.ico"]:
        answer = await page.request.get(href)
        assert answer.status == 200 and answer.headers["content-type"].startswith("image/"), href
    ico = await page.request.get("/favicon.ico")
    assert (await ico.body())[:4] == b"\x00\x00\x01\x00"  # an ICO file
    await owner_page(page, first_hour, "/prompts")  # the fixture fails on any 404 loaded


# 6 ─ error rows show their message ─────────────────────────────────────────────────────────────


async def test_error_rows_in_the_logs_show_their_message(fresh_page: Any, first_hour: Console) -> None:
    page = await owner_page(fresh_page, first_hour, "/logs?status=error")
    rows = page.locator("tr.run-row")
    assert await rows.count() == len(TYPOS)
    (message,) = {r["error_message"] for r in await runs(page, first_hour, deployment="nope")}
    shown = rows.filter(has_text="nope").locator(".run-error-text")
    assert await shown.is_visible()
    assert message[:30] in await shown.inner_text()
    assert message in (await shown.get_attribute("title") or "")
    await shot(page, "first-hour-logs-errors")


# 7 ─ after the forced password change, the page first asked for ───────────────────────────────


async def test_the_forced_password_change_returns_to_the_page_asked_for(
    fresh_page: Any, first_hour: Console
) -> None:
    page = fresh_page
    email = first_hour.add_member("editor", must_change_password=True)
    await page.goto("/usage?range=7d&group_by=model")
    assert urlsplit(page.url).path == "/sign-in"
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()
    assert urlsplit(page.url).path == "/change-password"
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/usage?range=7d&group_by=model"]
    await shot(page, "first-hour-forced-change")
    await page.get_by_label("New password", exact=True).fill("a brand new password")
    await page.get_by_label("New password again").fill("a brand new password")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Save password").click()
    assert page.url == f"{first_hour.url}/usage?range=7d&group_by=model"


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "evil.example"],
)
def test_the_forced_password_change_never_leads_off_the_console(first_hour: Console, target: str) -> None:
    email = first_hour.add_member("viewer", must_change_password=True)
    with httpx.Client(base_url=first_hour.url, timeout=30) as client:
        client.get("/sign-in")
        csrf = client.cookies["promptdeck_form_csrf"]
        form = {"email": email, "password": PASSWORD, "next": target, "csrf_token": csrf}
        signed = client.post("/sign-in", data=form)
        assert signed.status_code == 303 and signed.headers["location"] == "/change-password"
        shown = client.get("/change-password", params={"next": target})
        assert 'name="next"' not in shown.text
        token = shown.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        new = "a brand new password"
        changed = client.post(
            "/change-password",
            data={"csrf_token": token, "new_password": new, "confirm_password": new, "next": target},
        )
        assert changed.status_code == 303 and changed.headers["location"] == "/settings?changed=password"


# 8 ─ a model picker that takes any name ─────────────────────────────────────────────────────────


async def test_the_editor_offers_the_providers_models_and_takes_any(
    fresh_page: Any, first_hour: Console
) -> None:
    page = await owner_page(fresh_page, first_hour, "/prompts/summarize")
    provider = page.get_by_label("Provider")
    assert await provider.input_value() == "local"
    local = await page.eval_on_selector_all("#model-list option", "os => os.map(o => o.value)")
    assert "smollm2-135m-instruct" in local, local  # the embedded model
    await provider.select_option("openai")
    openai = await page.eval_on_selector_all("#model-list option", "os => os.map(o => o.value)")
    assert "gpt-4o-mini" in openai, openai
    name = page.get_by_label("Model name")
    assert await name.get_attribute("list") == "model-list"
    await name.fill("fast")  # a model no list knows, as the fake upstream serves it
    assert await name.input_value() == "fast"
    await name.focus()
    await shot(page, "first-hour-model-picker")
