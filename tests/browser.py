"""A real browser for page tests: Debian's /usr/bin/chromium driven by Playwright (never a downloaded one).

In CI (`CI` set) a missing chromium fails the test; on a laptop without it the test is skipped
with a message saying how to get it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("PAYBRIDGE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
# A Chinese-speaking payer by default (locale sets Accept-Language).
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "zh-CN",
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 860}, "locale": "zh-CN"}


def require_chromium() -> None:
    """Fail in CI, skip elsewhere, when the browser is not installed."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install chromium (scripts/check does it when run as root)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium for one test."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class ConsoleWatch:
    """Records console errors and uncaught page errors (a CSP violation is one)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))


async def screenshot(page: Any, name: str) -> None:
    """Refresh docs/images/<name>.png (the docs show them)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=True)
