"""The dashboard in a real Chromium: signing in and out, CSRF, phones changing live, pairing, matching
a payment (with the webhook at a real receiver), retrying a delivery, the admin's view.

Each test serves the real bridge on loopback, drives phones through real device websockets and
looks at the pages the way a merchant would. Screenshots land in docs/images/dashboard-*.png
(docs/dashboard.md shows them).
"""

from __future__ import annotations

import io
import time
from typing import Any

import segno
from playwright.async_api import expect

from tests.browser import DESKTOP, PHONE, ConsoleWatch, chromium, screenshot
from tests.harness import ADMIN_TOKEN, RunningBridge, eventually, running_receiver

EN_DESKTOP: dict[str, Any] = {**DESKTOP, "locale": "en-US"}
EN_PHONE: dict[str, Any] = {**PHONE, "locale": "en-US"}
LIVE_MS = 15_000


async def sign_in(page: Any, bridge: RunningBridge, secret: str) -> None:
    await page.goto(bridge.base_url + "/dashboard/sign-in")
    await page.fill("#secret", secret)
    await page.click("#sign-in button[type=submit]")


async def test_sign_in_wrong_key_and_sign_out(bridge: RunningBridge) -> None:
    """A wrong key shows an error and stays on the form; the right one opens the phones page with the
    shop's name; signing out returns to the form and the pages are closed again."""
    m = await bridge.merchant("山间茶铺")
    async with chromium() as browser:
        page = await browser.new_page(**EN_DESKTOP)
        console = ConsoleWatch(page)
        await sign_in(page, bridge, "pbk_not-a-real-key-00000000000000")
        await expect(page.locator("#sign-in-error")).to_have_text("That key is not valid. Check it and try again.")
        await screenshot(page, "dashboard-sign-in")
        await sign_in(page, bridge, m["api_key"])
        await page.wait_for_url("**/dashboard/phones")
        await expect(page.locator("#who")).to_have_text("山间茶铺")
        assert "pbk_" not in page.url
        await page.click("#sign-out")
        await page.wait_for_url("**/dashboard/sign-in")
        response = await page.goto(bridge.base_url + "/dashboard/phones")
        assert response is not None and page.url.endswith("/dashboard/sign-in")
        assert [e for e in console.errors if "401" not in e] == []


async def test_a_form_without_its_csrf_token_is_refused(bridge: RunningBridge) -> None:
    """A form whose CSRF field was removed (as a forged cross-site form would lack it) gets 403 and
    changes nothing."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"], "收银台")
    async with chromium() as browser:
        page = await browser.new_page(**EN_DESKTOP)
        await sign_in(page, bridge, m["api_key"])
        await page.goto(f"{bridge.base_url}/dashboard/phones/{device.device_id}/revoke")
        await page.evaluate("document.querySelector('#revoke-form input[name=csrf]').remove()")
        async with page.expect_navigation() as nav:
            await page.click("#revoke-confirm")
        response = await nav.value
        assert response is not None and response.status == 403
        await expect(page.locator("#message h1")).to_have_text("This form has expired")
    _, body = await bridge.call("GET", f"/v1/devices/{device.device_id}", token=m["api_key"])
    assert body["revoked"] is False


async def test_a_phone_goes_online_degraded_offline_live(bridge: RunningBridge) -> None:
    """With the phones page open, a phone connecting, sending a low-battery heartbeat and disconnecting
    shows up as online, degraded (battery low) and offline without a reload."""
    m = await bridge.merchant("山间茶铺")
    key = m["api_key"]
    device = await bridge.pair(key, "前台的旧手机")
    account = {
        "channel": "alipay",
        "name": "张小茶",
        "qr_payload": "https://qr.alipay.com/fkx1",
        "device_ids": [device.device_id],
    }
    status, _ = await bridge.call("POST", "/v1/accounts", token=key, json_body=account)
    assert status == 201
    async with chromium() as browser:
        for size, shot in ((PHONE, "phone"), (DESKTOP, "desktop")):
            page = await browser.new_page(**size)
            console = ConsoleWatch(page)
            await sign_in(page, bridge, key)
            await page.wait_for_url("**/dashboard/phones")
            card = page.locator(f"#phone-{device.device_id}")
            await expect(card).to_have_attribute("data-status", "offline")
            await expect(page.locator("#live-state")).to_have_attribute("data-state", "open")
            await page.evaluate("window.__same_page = 1")  # a reload would lose this
            await device.connect()
            await expect(card).to_have_attribute("data-status", "online", timeout=LIVE_MS)
            await expect(card.locator(".badge")).to_have_text("在线")
            await device.heartbeat(
                battery={"level": 8, "charging": False},
                outbox_depth=3,
                last_notification_at={"com.eg.android.AlipayGphone": 1_764_800_000_000},
            )
            await expect(card).to_have_attribute("data-status", "degraded", timeout=LIVE_MS)
            await expect(card.locator(".reason")).to_have_text("电量低且未充电")
            await expect(card.locator(".battery")).to_have_text("8%")
            await expect(card.locator(".outbox")).to_have_text("3")
            await expect(card).to_contain_text("张小茶")
            await expect(card).to_contain_text("com.eg.android.AlipayGphone")
            await screenshot(page, f"dashboard-phones-{shot}")
            await device.close()
            await expect(card).to_have_attribute("data-status", "offline", timeout=LIVE_MS)
            await expect(card.locator(".badge")).to_have_text("离线")
            assert await page.evaluate("window.__same_page") == 1
            assert console.errors == []
            await page.close()


async def test_pairing_page_turns_into_paired_by_itself(bridge: RunningBridge) -> None:
    """'Pair a phone' shows a QR code and the code; when a phone pairs with that code the page says
    'Paired: <name>' without a reload."""
    m = await bridge.merchant()
    async with chromium() as browser:
        page = await browser.new_page(**EN_PHONE)
        console = ConsoleWatch(page)
        await sign_in(page, bridge, m["api_key"])
        await page.click("#pair-phone")
        await expect(page.locator("#pair-qr svg")).to_be_visible()
        code = (await page.locator("#pair-code").inner_text()).strip()
        assert len(code) == 8
        await screenshot(page, "dashboard-pair")
        status, out = await bridge.call(
            "POST", "/v1/devices/pair", json_body={"code": code, "public_key": "A" * 43 + "=", "name": "Backup Redmi"}
        )
        assert status == 201, out
        await expect(page.locator("#paired")).to_have_text("Paired: Backup Redmi", timeout=LIVE_MS)
        await expect(page.locator("#pair-qr")).to_be_hidden()
        await screenshot(page, "dashboard-paired")
        assert console.errors == []


async def test_admin_view(bridge: RunningBridge) -> None:
    """The admin sees system health (database, sender, connected phones), every merchant with its usage,
    every merchant's phones, the metrics; creates a merchant whose key (shown once) then signs in; a
    merchant's session gets 404 for the admin's pages."""
    a = await bridge.merchant("A 面馆")
    b = await bridge.merchant("B 茶铺")
    noodle = await bridge.pair(a["api_key"], "面馆手机")
    tea = await bridge.pair(b["api_key"], "茶铺手机")
    await noodle.connect()
    await bridge.order(a["api_key"], "18.00")
    async with chromium() as browser:
        for size, shot in ((PHONE, "phone"), (DESKTOP, "desktop")):
            page = await browser.new_page(**size)
            console = ConsoleWatch(page)
            await sign_in(page, bridge, ADMIN_TOKEN)
            await page.wait_for_url("**/dashboard/admin")
            await expect(page.locator("#health-db .badge")).to_have_text("正常")
            await expect(page.locator("#health-sender .badge")).to_have_text("正常")
            await expect(page.locator("#connected-count")).to_have_text("1")
            row = page.locator(f"#merchant-{a['id']}")
            await expect(row).to_contain_text("A 面馆")
            await expect(row.locator("td").nth(2)).to_have_text("0 / 1")
            await screenshot(page, f"dashboard-admin-{shot}")
            assert console.errors == []
            await page.close()
        page = await browser.new_page(**EN_DESKTOP)
        await sign_in(page, bridge, ADMIN_TOKEN)
        await page.goto(bridge.base_url + "/dashboard/phones")
        await expect(page.locator(".phone")).to_have_count(2)
        await expect(page.locator("#phones")).to_contain_text("A 面馆")
        await expect(page.locator("#phones")).to_contain_text("B 茶铺")
        await expect(page.locator("#live-state")).to_have_attribute("data-state", "open")
        await tea.connect()  # another merchant's phone: the admin's page follows every merchant
        tea_card = page.locator(f"#phone-{tea.device_id}")
        await expect(tea_card).to_have_attribute("data-status", "online", timeout=LIVE_MS)
        await screenshot(page, "dashboard-admin-phones")
        await page.goto(bridge.base_url + "/dashboard/admin")
        await page.fill("#merchant-name", "C 咖啡")
        await page.click("#create-merchant button")
        new_key = (await page.locator("#new-api-key").inner_text()).strip()
        assert new_key.startswith("pbk_")
        response = await page.goto(bridge.base_url + "/dashboard/admin")
        assert response is not None and new_key not in await page.content()
        metrics = await page.goto(bridge.base_url + "/dashboard/admin/metrics")
        assert metrics is not None and metrics.status == 200 and "paybridge" in await page.content()

        merchant = await browser.new_page(**EN_DESKTOP)
        await sign_in(merchant, bridge, new_key)
        await merchant.wait_for_url("**/dashboard/phones")
        await expect(merchant.locator("#who")).to_have_text("C 咖啡")
        for path in ("/dashboard/admin", "/dashboard/admin/metrics"):
            response = await merchant.goto(bridge.base_url + path)
            assert response is not None and response.status == 404, path
    await noodle.close()
    await tea.close()


async def test_unmatched_payment_matched_by_hand_then_a_failed_delivery_retried(bridge: RunningBridge) -> None:
    """A payment no order fits waits in the unmatched queue with its reason and the order it may pay;
    one click matches it, the order is paid and order.paid reaches the shop's real receiver. The
    receiver first failed every attempt; after it is fixed, 'Retry' on the order's timeline delivers."""
    m = await bridge.merchant("山间茶铺")
    key = m["api_key"]
    device = await bridge.pair(key, "前台的旧手机")
    await device.connect()
    async with running_receiver(status=500) as rec, chromium() as browser:
        status, _ = await bridge.call("POST", "/v1/webhook-endpoints", token=key, json_body={"url": rec.url})
        assert status == 201
        order = await bridge.order(key, "25.00", merchant_order_id="A1024", expires_in=60, description="龙井 500g")
        # Seen an hour after the order's time ran out: no order fits any more.
        ack = await device.pay(order["pay_amount_cents"], observed_at=int(time.time() * 1000) + 3_600_000)
        assert ack["status"] == "accepted"
        page = await browser.new_page(**DESKTOP)
        console = ConsoleWatch(page)
        await sign_in(page, bridge, key)
        await page.goto(bridge.base_url + "/dashboard/payments")
        card = page.locator("#unmatched .payment")
        await expect(card).to_have_count(1)
        await expect(card.locator(".reason")).to_have_text("没有金额相符的订单")
        await expect(card.locator(".suggestion")).to_contain_text("A1024")
        await screenshot(page, "dashboard-payments-desktop")
        phone = await browser.new_page(**PHONE)
        await sign_in(phone, bridge, key)
        await phone.goto(bridge.base_url + "/dashboard/payments")
        await screenshot(phone, "dashboard-payments-phone")
        await phone.close()

        await card.locator(".suggestion button.match").click()
        await page.wait_for_url(f"**/dashboard/orders/{order['id']}?done=matched")
        await expect(page.locator("#order-status")).to_have_text("已付款")
        await expect(page.locator("#tl-payment")).to_contain_text("前台的旧手机")
        await rec.wait_for(lambda: len([e for e in rec.events("order.paid")]) >= 3)  # the test schedule: 3 tries
        _, _, delivery_id = await _paid_delivery(bridge, key, order["id"], "failed")
        await page.reload()
        row = page.locator(f"#delivery-{delivery_id}")
        await expect(row.locator(".badge").first).to_have_text("失败")
        await expect(row.locator(".attempt")).to_have_count(3)
        await expect(row.locator(".attempt").first).to_contain_text("HTTP 500")
        await screenshot(page, "dashboard-order-desktop")

        rec.status = 200
        await row.locator("button.retry").click()
        await page.wait_for_url(f"**/dashboard/deliveries/{delivery_id}?done=retried")
        await rec.wait_for(lambda: len(rec.events("order.paid")) >= 4)
        paid = rec.events("order.paid")
        assert len({e["id"] for e in paid}) == 1 and paid[-1]["data"]["order"]["id"] == order["id"]
        await _paid_delivery(bridge, key, order["id"], "succeeded")
        await page.reload()
        await expect(page.locator("#delivery-status")).to_have_text("成功")
        await expect(page.locator(".attempt")).to_have_count(4)
        await expect(page.locator(".attempt").last).to_contain_text("HTTP 200")
        await screenshot(page, "dashboard-delivery")
        assert console.errors == []
    await device.close()


async def _paid_delivery(bridge: RunningBridge, key: str, order_id: str, status: str) -> tuple[int, Any, str]:
    """Wait (bounded) until the order's order.paid delivery has `status`; its id."""

    async def fetch() -> Any:
        _, page = await bridge.call("GET", "/v1/deliveries?limit=50", token=key)
        return [d for d in page["data"] if d["event_type"] == "order.paid"]

    found = await eventually(fetch, lambda ds: bool(ds) and ds[0]["status"] == status)
    return 200, found, found[0]["id"]


async def test_every_merchant_page_at_both_widths(bridge: RunningBridge) -> None:
    """Orders (filtered), webhooks and accounts open without a console error at phone and desktop width,
    in Chinese and English; the screenshots are the docs' pictures."""
    m = await bridge.merchant("山间茶铺")
    key = m["api_key"]
    device = await bridge.pair(key, "前台的旧手机")
    await device.connect()
    account = {
        "channel": "alipay",
        "name": "张小茶",
        "qr_payload": "https://qr.alipay.com/fkx19283abcdef",
        "device_ids": [device.device_id],
    }
    await bridge.call("POST", "/v1/accounts", token=key, json_body=account)
    async with running_receiver() as rec, chromium() as browser:
        await bridge.call("POST", "/v1/webhook-endpoints", token=key, json_body={"url": rec.url})
        for i, (amount, channel) in enumerate((("10.00", "alipay"), ("10.00", "alipay"), ("36.50", "any"))):
            await bridge.order(key, amount, channel=channel, merchant_order_id=f"T2026-{i + 1:04d}")
        paid = await bridge.order(key, "58.00", merchant_order_id="T2026-0004")
        await device.pay(paid["pay_amount_cents"])
        await rec.wait_for(lambda: len(rec.events("order.paid")) == 1)
        for size, shot in ((PHONE, "phone"), (EN_DESKTOP, "desktop")):
            page = await browser.new_page(**size)
            console = ConsoleWatch(page)
            await sign_in(page, bridge, key)
            await page.wait_for_url("**/dashboard/phones")
            await page.goto(bridge.base_url + "/dashboard/orders")
            await expect(page.locator("#orders tbody tr")).to_have_count(4)
            await screenshot(page, f"dashboard-orders-{shot}")
            await page.select_option("#f-status", "paid")
            await page.click("#filter")
            await expect(page.locator("#orders tbody tr")).to_have_count(1)
            await expect(page.locator("#orders")).to_contain_text("T2026-0004")
            await page.goto(bridge.base_url + "/dashboard/webhooks")
            await expect(page.locator("#deliveries tbody tr")).to_have_count(2)  # payment.received, order.paid
            await screenshot(page, f"dashboard-webhooks-{shot}")
            await page.goto(bridge.base_url + "/dashboard/accounts")
            await expect(page.locator(".account .linked").first).to_have_text("前台的旧手机")
            if shot == "desktop":  # add a WeChat code from a picture of it, as a merchant would
                picture = io.BytesIO()
                segno.make("wxp://f2f0BrowserUpload", error="m").save(picture, kind="png", scale=8, border=4)
                await page.select_option("#acc-channel", "wechat")
                await page.fill("#acc-name", "微信收款")
                await page.set_input_files(
                    "#acc-image", files=[{"name": "code.png", "mimeType": "image/png", "buffer": picture.getvalue()}]
                )
                await page.click("#add-account button[type=submit]")
                await page.wait_for_url("**/dashboard/accounts?done=account_added")
                await expect(page.locator(".account")).to_have_count(2)
                await expect(page.locator("#accounts")).to_contain_text("wxp://f2f0BrowserUpload")
            await screenshot(page, f"dashboard-accounts-{shot}")
            assert console.errors == []
            await page.close()
    await device.close()
