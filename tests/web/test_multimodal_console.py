"""Image and document parts in the console, in a real browser (issue 18): the editor adds and
removes image and document parts, binds one to an input (`{{ photo }}` declares an `image`
input) and saves them; the playground takes a URL or a file (sent as a data: URL) for such an
input and previews it; a run's page shows the parts, a thumbnail only for an image URL, a data:
URL as its media type, size and SHA-256. Answers come from the fake upstream; image URLs are
answered inside the browser (nothing leaves the machine)."""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.browser import DESKTOP, shot
from tests.support.fake_openai import FakeOpenAI, deck_over, sqlite_url
from tests.web.conftest import Console, sign_in

NAMES = itertools.count()
PHOTO = "https://images.example.com/owl.png"
# a 2x2 PNG (red, green / blue, white), small enough to read in a test
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEklEQVR4nGP4z8DAAMIM/4EAAB/uBfsL2WiLAAAAAElFTkSuQmCC"
)
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n" * 20


class MediaConsole(Console):
    upstream: FakeOpenAI


@pytest.fixture(scope="module")
def deck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaConsole]:
    tmp: Path = tmp_path_factory.mktemp("multimodal-console")
    with FakeOpenAI() as upstream, deck_over(upstream.url, sqlite_url(tmp), tmp) as served:
        console = MediaConsole(served.live, served.admin_key, served.workspace_id)
        console.upstream = upstream
        yield console


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Any, deck: MediaConsole) -> AsyncIterator[Any]:
    """An editor's page; image URLs are answered with `PNG` by the browser itself, and a script
    error fails the test."""
    context = await browser.new_context(viewport=DESKTOP, base_url=deck.url)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    await context.route(
        "https://images.example.com/**", lambda route: route.fulfill(body=PNG, content_type="image/png")
    )
    opened = await context.new_page()
    opened.set_default_timeout(10_000)
    await sign_in(opened, deck.add_member("editor"), next_path="/prompts")
    yield opened
    await context.close()
    assert not errors, errors


def admin(deck: Console) -> httpx.Client:
    return httpx.Client(base_url=deck.url, headers={"Authorization": f"Bearer {deck.admin_key}"}, timeout=30)


def new_prompt(deck: Console, content: Any, inputs: dict[str, Any] | None = None) -> str:
    slug = f"vision-{next(NAMES)}"
    with admin(deck) as client:
        assert client.post("/api/prompts", json={"slug": slug}).status_code == 201
        body = {
            "model": "openai/gpt-4o",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}],
            "inputs": inputs or {},
        }
        saved = client.post(f"/api/prompts/{slug}/versions", json=body)
        assert saved.status_code == 201, saved.text
    return slug


def latest(deck: Console, slug: str) -> dict[str, Any]:
    with admin(deck) as client:
        versions = client.get(f"/api/prompts/{slug}/versions").json()["data"]
        number = max(v["number"] for v in versions)
        return dict(client.get(f"/api/prompts/{slug}/versions/{number}").json())


async def save(page: Any) -> None:
    await page.get_by_role("button", name="Save version").click()
    await page.locator("#saved-says").wait_for()


async def test_the_editor_adds_binds_and_removes_image_and_document_parts(
    page: Any, deck: MediaConsole
) -> None:
    slug = new_prompt(deck, "Describe the picture.")
    await page.goto(f"/prompts/{slug}")

    await page.get_by_role("button", name="Add an image to message 2").click()
    source = page.get_by_label("Source of image 1 of message 2")
    assert await source.evaluate("node => node === document.activeElement")
    await source.fill("{{ photo }}")
    await page.get_by_label("Detail of image 1 of message 2").select_option("low")
    await page.get_by_role("button", name="Add a document to message 2").click()
    await page.get_by_label("Source of document 1 of message 2").fill("https://files.example.com/owls.pdf")
    await page.get_by_label("File name of document 1 of message 2").fill("owls.pdf")
    # the bound part declares its input, typed by the part
    assert await page.get_by_label("Type of input photo").input_value() == "image"
    await shot(page, "editor-media-parts")

    await page.get_by_role("button", name="Remove document 1 of message 2").click()
    assert await page.get_by_label("Source of document 1 of message 2").count() == 0
    await save(page)

    saved = latest(deck, slug)
    assert saved["messages"][1]["content"] == [
        {"type": "text", "text": "Describe the picture."},
        {"type": "image", "source": "{{ photo }}", "detail": "low"},
    ]
    assert saved["inputs"]["photo"]["type"] == "image"

    # an empty source is named before the server is asked
    await page.get_by_role("button", name="Add a document to message 2").click()
    await page.get_by_role("button", name="Save version").click()
    error = page.locator('[data-error-slot="messages[1]"]')
    await error.wait_for()
    assert "Document 1 of message 2 has no source" in await error.inner_text()

    # removing every part makes the message a text again, as it was
    await page.get_by_role("button", name="Remove document 1 of message 2").click()
    await page.get_by_role("button", name="Remove image 1 of message 2").click()
    await page.get_by_label("Message 2 (user)").fill("Describe owls.")
    await save(page)
    assert latest(deck, slug)["messages"][1]["content"] == "Describe owls."


async def test_the_playground_takes_a_url_or_a_file_with_a_preview(page: Any, deck: MediaConsole) -> None:
    slug = new_prompt(
        deck,
        [{"type": "text", "text": "What is this?"}, {"type": "image", "source": "{{ photo }}"}],
        {"photo": {"type": "image"}},
    )
    await page.goto(f"/prompts/{slug}")

    url = page.locator("#pg-in-photo")
    await url.fill(PHOTO)
    await url.press("Tab")  # change: the thumbnail appears
    thumb = page.locator("#pg-preview-photo img.media-thumb")
    await thumb.wait_for()
    assert await thumb.evaluate("img => img.complete && img.naturalWidth") == 2
    await page.get_by_role("button", name="Run").click()
    await page.locator(".pg-status", has_text="done").wait_for(timeout=15_000)
    image = deck.upstream.seen[-1].body["messages"][1]["content"][1]
    assert image == {"type": "image_url", "image_url": {"url": PHOTO}}
    url_run = await page.get_by_role("link", name="Open this run in the logs").get_attribute("href")
    await shot(page, "playground-image-url")

    await page.locator("#pg-file-photo").set_input_files(
        {"name": "owl.png", "mimeType": "image/png", "buffer": PNG}
    )
    await page.locator("#pg-preview-photo", has_text="owl.png").wait_for()
    assert f"owl.png · {len(PNG)} bytes" in await page.locator("#pg-preview-photo").inner_text()
    assert await url.input_value() == ""
    assert (await thumb.get_attribute("src") or "").startswith("data:image/png;base64,")
    await page.get_by_role("button", name="Run").click()
    await page.locator(".pg-status", has_text="done").wait_for(timeout=15_000)
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert deck.upstream.seen[-1].body["messages"][1]["content"][1]["image_url"]["url"] == data_url
    await shot(page, "playground-image-file")
    file_run = await page.get_by_role("link", name="Open this run in the logs").get_attribute("href")

    # the run page: the URL as a thumbnail; the file as its type, size and digest, no picture
    await page.goto(str(url_run))
    shown = page.locator(".run-media.run-image")
    assert await shown.locator("img.media-thumb").get_attribute("src") == PHOTO
    assert PHOTO in await shown.inner_text()
    await shot(page, "run-image-url")
    await page.goto(str(file_run))
    facts = " ".join((await page.locator(".run-media.run-image").inner_text()).split())
    assert "image/png" in facts and f"{len(PNG)} bytes" in facts
    assert hashlib.sha256(PNG).hexdigest() in facts
    assert await page.locator(".run-media img").count() == 0
    assert base64.b64encode(PNG).decode()[:24] not in await page.content()
    await shot(page, "run-image-data")


async def test_a_pdf_from_this_computer_shows_its_name_and_size_and_is_sent(
    page: Any, deck: MediaConsole
) -> None:
    slug = new_prompt(
        deck,
        [{"type": "text", "text": "Summarize."}, {"type": "document", "source": "{{ report }}"}],
        {"report": {"type": "document"}},
    )
    await page.goto(f"/prompts/{slug}")

    await page.locator("#pg-file-report").set_input_files(
        {"name": "owls.pdf", "mimeType": "application/pdf", "buffer": PDF}
    )
    preview = page.locator("#pg-preview-report")
    await preview.locator(".media-name", has_text="owls.pdf").wait_for()
    assert f"owls.pdf · {len(PDF) / 1024:.1f} KB" in await preview.inner_text()
    assert await preview.locator("img").count() == 0  # no thumbnail for a PDF
    await page.get_by_role("button", name="Run").click()
    await page.locator(".pg-status", has_text="done").wait_for(timeout=15_000)
    sent = deck.upstream.seen[-1].body["messages"][1]["content"][1]
    assert sent["type"] == "file"
    assert sent["file"]["file_data"] == "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    await shot(page, "playground-document-file")
