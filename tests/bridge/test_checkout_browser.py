"""The payer's checkout page in a real Chromium: phone and desktop, languages, paid, expired, no script.

Each test serves the real bridge on loopback, pays through a real device websocket, and looks
at the page the way a payer would. Screenshots land in docs/images/ (docs/checkout.md shows them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from aiohttp import web
from playwright.async_api import expect

from tests.browser import DESKTOP, PHONE, ConsoleWatch, chromium, screenshot
from tests.harness import RunningBridge, TestDevice, running_app

ALIPAY_QR = "https://qr.alipay.com/fkx19283abcdef"
WECHAT_QR = "wxp://f2f0Yx1kq8Zb3lTest"


@asynccontextmanager
async def shop_site() -> AsyncIterator[str]:
    """The shop's own site on loopback: `<base>/done` is where paid payers come back to."""

    async def done(request: web.Request) -> web.Response:
        page = f'<link rel="icon" href="data:,"><h1>back at the shop: {request.query_string}</h1>'
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/done", done)
    async with running_app(app) as base:
        yield base


async def a_shop(bridge: RunningBridge, *channels: str) -> tuple[str, TestDevice]:
    """A merchant named like a real shop, one connected phone, and a receiving account per channel."""
    m = await bridge.merchant("山间茶铺")
    key = m["api_key"]
    device = await bridge.pair(key)
    await device.connect()
    for channel in channels:
        payload = ALIPAY_QR if channel == "alipay" else WECHAT_QR
        name = "张小茶"
        status, out = await bridge.call(
            "POST",
            "/v1/accounts",
            token=key,
            json_body={"channel": channel, "name": name, "qr_payload": payload, "device_ids": [device.device_id]},
        )
        assert status == 201, out
    return key, device


async def stepped_order(bridge: RunningBridge, key: str, **extra: Any) -> dict[str, Any]:
    """An order whose pay amount (9.99) differs from the asked 10.00: another pending order holds 10.00."""
    await bridge.order(key, "10.00", description="明前龙井 250g")
    order = await bridge.order(key, "10.00", description="明前龙井 250g", **extra)
    assert order["pay_amount"] == "9.99"
    return order


async def test_phone_page_shows_amount_warning_qr_and_alipay_button(bridge: RunningBridge) -> None:
    """On a phone, in Chinese: the shop, the item, 9.99 large, the 'not 10.00' warning, the QR, the
    'open Alipay' button with the deep link, the save-QR link and a running countdown; no console error."""
    key, device = await a_shop(bridge, "alipay")
    order = await stepped_order(bridge, key)
    async with chromium() as browser:
        page = await browser.new_page(**PHONE)
        console = ConsoleWatch(page)
        response = await page.goto(order["checkout_url"])
        assert response is not None and response.status == 200
        assert await page.locator(".shop-name").inner_text() == "山间茶铺"
        assert await page.locator(".item").inner_text() == "明前龙井 250g"
        assert await page.locator("#pay-amount").inner_text() == "¥9.99"
        assert "请准确支付 ¥9.99，不是 ¥10.00" in await page.locator("#amount-warning").inner_text()
        assert await page.locator("#qr svg path").count() >= 1
        button = page.locator("#open-alipay")
        assert await button.is_visible()
        assert await button.get_attribute("href") == (
            "alipays://platformapi/startapp?saId=10000007&qrcode=" + quote(ALIPAY_QR, safe="")
        )
        assert await page.locator("#save-qr").is_visible()
        first = await page.locator("#countdown").inner_text()
        await expect(page.locator("#countdown")).not_to_have_text(first)  # the script counts down
        await screenshot(page, "checkout-phone")
        assert console.errors == []
    await device.close()


async def test_desktop_page_has_no_phone_buttons(bridge: RunningBridge) -> None:
    """On a desktop the QR is there to scan with a phone; the phone-only buttons are hidden."""
    key, device = await a_shop(bridge, "alipay")
    order = await stepped_order(bridge, key)
    async with chromium() as browser:
        page = await browser.new_page(**DESKTOP)
        console = ConsoleWatch(page)
        await page.goto(order["checkout_url"])
        assert await page.locator("#qr svg").is_visible()
        assert not await page.locator("#open-alipay").is_visible()
        assert await page.locator(".scan").inner_text() == "打开支付宝，扫一扫"
        await screenshot(page, "checkout-desktop")
        assert console.errors == []
    await device.close()


async def test_english_by_accept_language(bridge: RunningBridge) -> None:
    """A browser that prefers English gets the English page, warning included."""
    key, device = await a_shop(bridge, "alipay")
    order = await stepped_order(bridge, key)
    async with chromium() as browser:
        page = await browser.new_page(**{**PHONE, "locale": "en-GB"})  # Accept-Language: en-GB
        console = ConsoleWatch(page)
        await page.goto(order["checkout_url"])
        assert await page.locator("html").get_attribute("lang") == "en"
        assert "Pay exactly ¥9.99, not ¥10.00" in await page.locator("#amount-warning").inner_text()
        assert await page.locator("#open-alipay").inner_text() == "Open Alipay to pay"
        await screenshot(page, "checkout-phone-en")
        assert console.errors == []
    await device.close()


async def test_paid_goes_to_return_url_by_itself(bridge: RunningBridge) -> None:
    """Once the phone reports the payment, the open page says so and goes to return_url, no click needed."""
    key, device = await a_shop(bridge, "alipay")
    async with shop_site() as site, chromium() as browser:
        order = await bridge.order(key, "12.30", return_url=f"{site}/done?order=A1")
        page = await browser.new_page(**PHONE)
        console = ConsoleWatch(page)
        await page.goto(order["checkout_url"])
        assert await page.locator("#paid-panel").is_hidden()
        ack = await device.pay(order["pay_amount_cents"])
        assert ack["status"] == "accepted"
        await page.wait_for_url(f"{site}/done?order=A1", timeout=15_000)
        assert await page.locator("h1").inner_text() == "back at the shop: order=A1"
        assert console.errors == []
    await device.close()


async def test_paid_without_return_url_says_paid(bridge: RunningBridge) -> None:
    """With no return_url the page turns into a 'payment received' page and stays."""
    key, device = await a_shop(bridge, "alipay")
    order = await bridge.order(key, "8.80", description="桂花乌龙 100g")
    async with chromium() as browser:
        page = await browser.new_page(**PHONE)
        console = ConsoleWatch(page)
        await page.goto(order["checkout_url"])
        await device.pay(order["pay_amount_cents"])
        await page.locator("#paid-panel h1", has_text="已收到付款").wait_for(timeout=15_000)
        assert await page.locator("#qr").count() == 0
        assert await page.locator("#status-badge").inner_text() == "已付款"
        await screenshot(page, "checkout-paid")
        assert console.errors == []
    await device.close()


async def test_expired_page(bridge: RunningBridge) -> None:
    """When the order's time runs out the open page says so, without the QR code."""
    key, device = await a_shop(bridge, "alipay")
    order = await bridge.order(key, "5.00")
    async with chromium() as browser:
        page = await browser.new_page(**PHONE)
        console = ConsoleWatch(page)
        await page.goto(order["checkout_url"])
        bridge.ctx.clock.offset_ms += 3_600_000  # type: ignore[attr-defined]  # an hour later
        await page.locator("#over-panel h1", has_text="订单已过期").wait_for(timeout=15_000)
        assert await page.locator("#qr").count() == 0
        assert "请不要再付款" in await page.locator("#over-panel").inner_text()
        await screenshot(page, "checkout-expired")
        assert console.errors == []
    await device.close()


async def test_without_javascript_meta_refresh_follows_the_order(bridge: RunningBridge) -> None:
    """With scripts off the page still shows everything, and its meta refresh lands on return_url once paid."""
    key, device = await a_shop(bridge, "alipay")
    async with shop_site() as site, chromium() as browser:
        order = await bridge.order(key, "3.00", return_url=f"{site}/done?nojs=1")
        context = await browser.new_context(**PHONE, java_script_enabled=False)
        page = await context.new_page()
        await page.goto(order["checkout_url"])
        assert await page.locator("#pay-amount").inner_text() == "¥3.00"
        assert await page.locator("#qr svg").is_visible()
        await device.pay(order["pay_amount_cents"])
        await page.wait_for_url(f"{site}/done?nojs=1", timeout=20_000)
        await context.close()
    await device.close()


async def test_any_channel_order_lets_the_payer_pick(bridge: RunningBridge) -> None:
    """An order without a channel offers each account; picking WeChat shows its QR and the album hint."""
    key, device = await a_shop(bridge, "alipay", "wechat")
    order = await bridge.order(key, "20.00", channel="any", description="茶具套装")
    async with chromium() as browser:
        page = await browser.new_page(**PHONE)
        console = ConsoleWatch(page)
        await page.goto(order["checkout_url"])
        choices = page.locator(".choices a")
        assert await choices.count() == 2
        assert await page.locator("#open-alipay").is_visible()
        await page.locator(".choices a", has_text="微信支付").click()
        await page.locator("#wechat-hint").wait_for()
        assert await page.locator(".choices a[aria-current=true]").inner_text() == "微信支付 · 张小茶"
        assert await page.locator("#open-alipay").count() == 0
        await screenshot(page, "checkout-choose")
        await device.pay(order["pay_amount_cents"], channel="wechat", package="com.tencent.mm")
        await page.locator("#paid-panel h1").wait_for(timeout=15_000)
        assert console.errors == []
    await device.close()


async def test_unknown_order_is_a_404_page(bridge: RunningBridge) -> None:
    """An id that is no order gets a plain 404 page, not a stack trace or JSON."""
    async with chromium() as browser:
        page = await browser.new_page(**PHONE)
        response = await page.goto(bridge.base_url + "/pay/ord_0000000000000000000000000000dead")
        assert response is not None and response.status == 404
        assert await page.locator("h1").inner_text() == "找不到这个订单"
