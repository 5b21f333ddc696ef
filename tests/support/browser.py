"""Debian's Chromium driven by Playwright, and screenshots of console pages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("PROMPTDECK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


async def launch_chromium() -> tuple[Any, Any] | str:
    """(playwright, browser) on the running event loop, or why they cannot be started.

    The async API, because Playwright's sync API marks its own event loop as running in the
    test thread, and every later `asyncio.run` (the suite's fixtures use it) would fail."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (once per session)
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium; `make test` does it)"
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    playwright = await async_playwright().start()
    try:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:
        await playwright.stop()
        return f"Chromium did not start: {exc}"
    return playwright, browser


async def shot(page: Any, name: str) -> tuple[Path, Path]:
    """Save the whole page as tests/screenshots/<name>.png at 1280x800 and
    <name>-phone.png at 390x844 (then restore the page's size). Look at both."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size or DESKTOP
    paths = []
    for size, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
        await page.set_viewport_size(size)
        path = SCREENSHOTS / f"{name}{suffix}.png"
        await page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    await page.set_viewport_size(before)
    return paths[0], paths[1]
