"""The checkout page over plain HTTP: order fields (checkout_url, return_url), the status JSON,
the paid redirect, headers, rate limits, account choice for `any` orders, and the language pick."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.web.i18n import pick_language
from tests.harness import RunningBridge, eventually, make_settings, running_bridge

QR = "https://qr.alipay.com/fkx0001"


async def alipay_account(bridge: RunningBridge, key: str, name: str = "A", payload: str = QR) -> dict[str, object]:
    status, out = await bridge.call(
        "POST", "/v1/accounts", token=key, json_body={"channel": "alipay", "name": name, "qr_payload": payload}
    )
    assert status == 201, out
    return dict(out)


async def test_checkout_url_uses_the_bound_address_by_default(bridge: RunningBridge) -> None:
    """Without public_url, checkout_url is built from the address the bridge actually listens on."""
    m = await bridge.merchant()
    order = await bridge.order(m["api_key"], "1.00")
    assert order["checkout_url"] == f"{bridge.base_url}/pay/{order['id']}"
    _, listed = await bridge.call("GET", "/v1/orders", token=m["api_key"])
    assert listed["data"][0]["checkout_url"] == order["checkout_url"]


async def test_public_url_builds_every_url_we_hand_out(tmp_path: Path) -> None:
    """With public_url set (trailing slash or not), checkout_url and pair_url start with it."""
    settings = make_settings(tmp_path / "d", public_url="https://pay.example.com/")
    async with running_bridge(settings) as b:
        m = await b.merchant()
        order = await b.order(m["api_key"], "1.00")
        assert order["checkout_url"] == f"https://pay.example.com/pay/{order['id']}"
        _, code = await b.call("POST", "/v1/pairing-codes", token=m["api_key"])
        assert code["server"] == "https://pay.example.com"
        assert b.ctx.public_url("/submit.php") == "https://pay.example.com/submit.php"


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/x", "https://user:pw@example.com/"])
def test_public_url_must_be_a_plain_http_url(url: str) -> None:
    """A public_url that is not http(s), has no host or carries credentials-like junk is a config error."""
    with pytest.raises(ConfigError, match="PAYBRIDGE_PUBLIC_URL"):
        replace(Settings(), public_url=url + "?q=1" if url.startswith("https://user") else url)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"return_url": "javascript:alert(1)"}, "invalid_url"),
        ({"return_url": "ftp://example.com/"}, "invalid_url"),
        ({"return_url": 5}, "invalid_field"),
        ({"return_url": "https://example.com/" + "x" * 2100}, "invalid_field"),
        ({"description": "x" * 257}, "invalid_field"),
        ({"description": "a\nb"}, "invalid_field"),
    ],
)
async def test_bad_return_url_or_description(bridge: RunningBridge, fields: dict[str, object], code: str) -> None:
    """return_url is checked like notify_url; description is short plain text."""
    m = await bridge.merchant()
    body = {"merchant_order_id": "x", "amount": "1.00", "channel": "alipay", **fields}
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    assert status == 400 and out["error"]["code"] == code


async def test_private_return_url_is_refused(tmp_path: Path) -> None:
    """Unless private targets are allowed, a return_url naming a loopback or private address is refused."""
    async with running_bridge(make_settings(tmp_path / "d", allow_private_webhooks=False)) as b:
        m = await b.merchant()
        for url in ("http://127.0.0.1/done", "http://10.0.0.8/done", "http://169.254.169.254/"):
            status, out = await b.call(
                "POST",
                "/v1/orders",
                token=m["api_key"],
                json_body={"merchant_order_id": url, "amount": "1.00", "channel": "alipay", "return_url": url},
            )
            assert status == 400 and out["error"]["code"] == "forbidden_webhook_target", out
        order = await b.order(m["api_key"], "1.00", return_url="https://shop.example.com/done")
        assert order["return_url"] == "https://shop.example.com/done"


async def test_return_url_and_description_are_part_of_idempotency(bridge: RunningBridge) -> None:
    """The same merchant_order_id with the same return_url is the same order; a changed one is a conflict."""
    m = await bridge.merchant()
    body = {
        "merchant_order_id": "R1",
        "amount": "2.00",
        "channel": "alipay",
        "return_url": "http://127.0.0.1:9/done",
        "description": "tea",
    }
    s1, o1 = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    s2, o2 = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    s3, _ = await bridge.call(
        "POST", "/v1/orders", token=m["api_key"], json_body={**body, "return_url": "http://127.0.0.1:9/x"}
    )
    s4, _ = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body={**body, "description": "coffee"})
    assert (s1, s2, s3, s4) == (201, 200, 409, 409)
    assert o1["id"] == o2["id"] and (o1["return_url"], o1["description"]) == ("http://127.0.0.1:9/done", "tea")


async def test_status_json_then_paid_redirect(bridge: RunningBridge) -> None:
    """Status is pending with return_url null; once paid it carries return_url and the page itself is a 302 to it."""
    m = await bridge.merchant()
    key = m["api_key"]
    await alipay_account(bridge, key)
    device = await bridge.pair(key)
    await device.connect()
    order = await bridge.order(key, "4.20", return_url="http://127.0.0.1:9/done?o=1")
    status, s = await bridge.call("GET", f"/pay/{order['id']}/status")
    assert status == 200
    assert (s["status"], s["pay_amount"], s["amount"], s["return_url"], s["watch"]) == (
        "pending",
        "4.20",
        "4.20",
        None,
        True,
    )
    assert 0 < s["seconds_left"] <= 300
    await device.pay(order["pay_amount_cents"])
    s = await eventually(
        lambda: bridge.call("GET", f"/pay/{order['id']}/status"), lambda r: r[1].get("status") == "paid", interval=0.3
    )
    assert s[1]["return_url"] == "http://127.0.0.1:9/done?o=1" and s[1]["watch"] is False
    async with bridge.session.get(f"{bridge.base_url}/pay/{order['id']}", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "http://127.0.0.1:9/done?o=1"
        assert r.headers["Cache-Control"] == "no-store"
    await device.close()


async def test_page_headers_and_content(bridge: RunningBridge) -> None:
    """The page is HTML with a script-tight CSP (no inline script, no other origin), no Referer, no framing,
    no caching; it names the QR's deep link and links its script as a same-origin file."""
    m = await bridge.merchant()
    await alipay_account(bridge, m["api_key"])
    order = await bridge.order(m["api_key"], "1.50")
    async with bridge.session.get(order["checkout_url"]) as r:
        html = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["Referrer-Policy"] == "no-referrer" and r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in html and 'src="/static/checkout.js?v=' in html
    assert "alipays://platformapi/startapp?saId=10000007&amp;qrcode=https%3A%2F%2Fqr.alipay.com%2Ffkx0001" in html
    assert '<meta http-equiv="refresh" content="5">' in html  # inside <noscript>
    async with bridge.session.get(f"{bridge.base_url}/static/checkout.js") as r:
        assert r.status == 200 and r.content_type == "text/javascript"
    async with bridge.session.get(f"{order['checkout_url']}/qr.png") as r:
        body = await r.read()
        assert r.status == 200 and body.startswith(b"\x89PNG") and "attachment" in r.headers["Content-Disposition"]


async def test_page_escapes_merchant_text(bridge: RunningBridge) -> None:
    """Shop-supplied text (description) is escaped, never markup."""
    m = await bridge.merchant()
    order = await bridge.order(m["api_key"], "1.00", description="<img src=x onerror=alert(1)>")
    async with bridge.session.get(order["checkout_url"]) as r:
        html = await r.text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_unknown_order(bridge: RunningBridge) -> None:
    """An unknown id is a 404 HTML page; its status is a 404 JSON error."""
    async with bridge.session.get(f"{bridge.base_url}/pay/ord_nope") as r:
        assert r.status == 404 and r.content_type == "text/html" and "找不到这个订单" in await r.text()
    status, out = await bridge.call("GET", "/pay/ord_nope/status")
    assert status == 404 and out["error"]["code"] == "not_found"
    status, _ = await bridge.call("GET", "/pay/" + "x" * 65)
    assert status == 404


async def test_status_polling_is_rate_limited(bridge: RunningBridge) -> None:
    """One client hammering one order's status gets 429 with Retry-After, well before it hurts."""
    m = await bridge.merchant()
    order = await bridge.order(m["api_key"], "1.00")
    codes = []
    for _ in range(40):
        async with bridge.session.get(f"{bridge.base_url}/pay/{order['id']}/status") as r:
            codes.append(r.status)
            if r.status == 429:
                assert int(r.headers["Retry-After"]) > 0
    assert codes[:30] == [200] * 30 and 429 in codes


async def test_guessing_ids_is_rate_limited(bridge: RunningBridge) -> None:
    """After 30 unknown ids an address is refused even for real orders, until its bucket refills."""
    m = await bridge.merchant()
    order = await bridge.order(m["api_key"], "1.00")
    for i in range(30):
        status, _ = await bridge.call("GET", f"/pay/ord_guess{i}/status")
        assert status == 404
    status, _ = await bridge.call("GET", f"/pay/{order['id']}/status")
    assert status == 429
    bridge.ctx.clock.offset_ms += 60_000  # type: ignore[attr-defined]
    status, _ = await bridge.call("GET", f"/pay/{order['id']}/status")
    assert status == 200


async def test_expired_order_reads_expired_and_late_payment_still_returns(bridge: RunningBridge) -> None:
    """Past its time the order reads expired (no QR), keeps being watched through the late grace, and
    a late payment still sends the payer on."""
    m = await bridge.merchant()
    key = m["api_key"]
    await alipay_account(bridge, key)
    device = await bridge.pair(key)
    await device.connect()
    order = await bridge.order(key, "6.60", return_url="http://127.0.0.1:9/late")
    bridge.ctx.clock.offset_ms += 301_000  # type: ignore[attr-defined]
    _, s = await bridge.call("GET", f"/pay/{order['id']}/status")
    assert (s["status"], s["seconds_left"], s["watch"]) == ("expired", 0, True)
    async with bridge.session.get(order["checkout_url"]) as r:
        html = await r.text()
    assert "订单已过期" in html and "<svg" not in html
    bridge.ctx.clock.offset_ms -= 301_000  # type: ignore[attr-defined]  # the device's report is "now"
    await device.pay(order["pay_amount_cents"])
    s = await eventually(
        lambda: bridge.call("GET", f"/pay/{order['id']}/status"), lambda r: r[1].get("status") == "paid", interval=0.3
    )
    assert s[1]["return_url"] == "http://127.0.0.1:9/late"
    await device.close()


async def test_any_order_offers_the_accounts_holding_its_amount(bridge: RunningBridge) -> None:
    """An `any` order offers each account that holds its pay amount (picked by ?account=); an account
    added after the order was created is not offered (another order may own that amount there)."""
    m = await bridge.merchant()
    key = m["api_key"]
    a = await alipay_account(bridge, key, "A", "https://qr.alipay.com/a")
    status, w = await bridge.call(
        "POST", "/v1/accounts", token=key, json_body={"channel": "wechat", "name": "W", "qr_payload": "wxp://w"}
    )
    assert status == 201
    order = await bridge.order(key, "9.00", channel="any")
    await alipay_account(bridge, key, "Late", "https://qr.alipay.com/late")
    async with bridge.session.get(order["checkout_url"]) as r:
        html = await r.text()
    assert html.count('class="choice ') == 2 and "Late" not in html
    assert f'href="/pay/{order["id"]}?account={a["id"]}" class="choice choice-alipay" aria-current="true"' in html
    async with bridge.session.get(f"{order['checkout_url']}?account={w['id']}") as r:
        html = await r.text()
    assert f'account={w["id"]}" class="choice choice-wechat" aria-current="true"' in html and "alipays://" not in html
    async with bridge.session.get(f"{order['checkout_url']}/qr.png?account={w['id']}") as r:
        assert r.status == 200


@pytest.mark.parametrize(
    ("header", "override", "lang"),
    [
        (None, None, "zh"),
        ("", None, "zh"),
        ("en-US,en;q=0.9", None, "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh"),
        ("en;q=0.5, zh-TW;q=0.8", None, "zh"),
        ("fr-FR, de;q=0.9, en;q=0.2", None, "en"),
        ("fr-FR, de;q=0.9", None, "zh"),
        ("en;q=0, zh;q=0.1", None, "zh"),
        ("en;q=bogus", None, "zh"),
        ("zh-CN", "en", "en"),
        ("en", "xx", "en"),
    ],
)
def test_pick_language(header: str | None, override: str | None, lang: str) -> None:
    """Chinese by default; English when the browser ranks it above Chinese; ?lang= wins when valid."""
    assert pick_language(header, override) == lang


async def test_payload_too_long_for_a_qr_code(bridge: RunningBridge) -> None:
    """An account payload no QR code can hold (2,048 CJK characters) gives a page without a QR, not an error."""
    m = await bridge.merchant()
    await alipay_account(bridge, m["api_key"], "Long", "中" * 2048)
    order = await bridge.order(m["api_key"], "1.00")
    async with bridge.session.get(order["checkout_url"]) as r:
        html = await r.text()
        assert r.status == 200
    assert "<svg" not in html and "商户没有为这个订单设置收款码" in html
    async with bridge.session.get(f"{order['checkout_url']}/qr.png") as r:
        assert r.status == 404


async def test_closed_order_page(bridge: RunningBridge) -> None:
    """A closed order says so, shows no QR and stops refreshing."""
    m = await bridge.merchant()
    await alipay_account(bridge, m["api_key"])
    order = await bridge.order(m["api_key"], "2.50")
    status, _ = await bridge.call("POST", f"/v1/orders/{order['id']}/close", token=m["api_key"])
    assert status == 200
    async with bridge.session.get(order["checkout_url"], headers={"Accept-Language": "en"}) as r:
        html = await r.text()
    assert "This order was closed" in html and "<svg" not in html and 'http-equiv="refresh"' not in html
    _, s = await bridge.call("GET", f"/pay/{order['id']}/status")
    assert (s["status"], s["watch"], s["return_url"]) == ("closed", False, None)
