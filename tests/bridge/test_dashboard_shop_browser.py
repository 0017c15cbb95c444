"""The shop settings page in a real Chromium at phone and desktop width: the key masked, shown on request,
rotated through the confirmation page. Screenshots land in docs/images/dashboard-shop-settings-*.png."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from bridge.web.dashboard.shop import masked
from tests.browser import DESKTOP, PHONE, ConsoleWatch, chromium, screenshot
from tests.harness import RunningBridge

EN_DESKTOP: dict[str, Any] = {**DESKTOP, "locale": "en-US"}


async def test_shop_settings_at_both_widths(bridge: RunningBridge) -> None:
    """A merchant opens shop settings (Chinese on a phone, English on a desktop): the key is masked until
    "show the key"; rotating asks first, then shows the new key, which the API confirms."""
    m = await bridge.merchant("山间茶铺")
    key = m["api_key"]
    async with chromium() as browser:
        for size, shot in ((PHONE, "phone"), (EN_DESKTOP, "desktop")):
            _, creds = await bridge.call("GET", "/v1/compat", token=key)
            page = await browser.new_page(**size)
            console = ConsoleWatch(page)
            await page.goto(bridge.base_url + "/dashboard/sign-in")
            await page.fill("#secret", key)
            await page.click("#sign-in button[type=submit]")
            await page.wait_for_url("**/dashboard/phones")
            await page.click("nav.tabs a[href='/dashboard/shop']")
            await page.wait_for_url("**/dashboard/shop")
            await expect(page.locator("#setup-dujiaoka-epay")).to_contain_text(creds["submit_url"])
            await expect(page.locator("#credentials .masked")).to_have_text(masked(creds["key"]))
            assert creds["key"] not in await page.content()
            await screenshot(page, f"dashboard-shop-settings-{shot}")
            await page.click("#reveal")
            await expect(page.locator("#credentials .key")).to_have_text(creds["key"])
            assert "/dashboard/shop/reveal" in page.url and creds["key"] not in page.url
            if shot == "desktop":
                await page.click("#rotate")
                await page.wait_for_url("**/dashboard/shop/rotate")
                await page.click("#rotate-confirm")
                await expect(page.locator("#rotated")).to_be_visible()
                _, rotated = await bridge.call("GET", "/v1/compat", token=key)
                assert rotated["key"] != creds["key"]
                await expect(page.locator("#fields-new-api .key")).to_have_text(rotated["key"])
                await screenshot(page, "dashboard-shop-settings-rotated")
            assert console.errors == []
            await page.close()
