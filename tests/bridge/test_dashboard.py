"""The dashboard over plain HTTP: sign-in sessions, cookies, CSRF, rate limits, and merchants kept apart.

Each test serves the real bridge on loopback and talks to it the way a browser does (forms,
cookies); the browser tests (test_dashboard_browser.py) drive a real Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from bridge.clock import SystemClock
from bridge.core.sessions import SessionRules, csrf_token, session_alive, should_touch
from bridge.core.tokens import hash_secret
from tests.harness import ADMIN_TOKEN, RunningBridge, make_settings, running_bridge, running_receiver

HTML = {"Accept": "text/html"}


class Browser:
    """A cookie-keeping HTTP client that signs in through the form, like a browser would."""

    def __init__(self, bridge: RunningBridge, lang: str = "en") -> None:
        self.bridge = bridge
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept-Language": lang, **HTML}
        )

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.bridge.base_url + path, allow_redirects=False, **kw) as r:
            return r.status, await r.text(), r

    async def post(self, path: str, data: dict[str, str], **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.post(self.bridge.base_url + path, data=data, allow_redirects=False, **kw) as r:
            return r.status, await r.text(), r

    async def sign_in(self, secret: str) -> tuple[int, str, aiohttp.ClientResponse]:
        status, html, _ = await self.get("/dashboard/sign-in")
        assert status == 200, html
        return await self.post("/dashboard/sign-in", {"csrf": field(html, "csrf"), "secret": secret})

    async def csrf(self, path: str = "/dashboard/phones") -> str:
        status, html, _ = await self.get(path)
        assert status == 200, html
        return field(html, "csrf")


def field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} field in the page"
    return m.group(1)


def test_session_rules() -> None:
    """A session lives until idle for `idle_ms` or past its absolute expiry; activity is written once a minute."""
    rules = SessionRules(idle_ms=1000, max_ms=10_000, touch_every_ms=100)
    cases = [  # (last seen, expires, now, alive)
        (0, 10_000, 999, True),
        (0, 10_000, 1000, False),
        (9_500, 10_000, 9_999, True),
        (9_500, 10_000, 10_000, False),
    ]
    for last, expires, now, alive in cases:
        assert session_alive(last_seen_at=last, expires_at=expires, now=now, rules=rules) is alive, (last, now)
    assert not should_touch(last_seen_at=0, now=99, rules=rules) and should_touch(last_seen_at=0, now=100, rules=rules)
    assert csrf_token("a") != csrf_token("b") and len(csrf_token("a")) == 40


async def test_sign_in_sets_a_strict_http_only_cookie_and_stores_only_a_hash(bridge: RunningBridge) -> None:
    """A merchant key signs in: 303 to the dashboard, an HttpOnly SameSite=Strict cookie under /dashboard
    (not Secure on http), and the sessions table holds the id's hash, never the id."""
    m = await bridge.merchant("茶铺")
    async with Browser(bridge) as b:
        status, _, r = await b.sign_in(m["api_key"])
        assert status == 303 and r.headers["Location"] == "/dashboard"
        cookie = next(v for k, v in r.headers.items() if k == "Set-Cookie" and v.startswith("pb_session="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
        assert "Secure" not in cookie
        session_id = cookie.split(";")[0].split("=", 1)[1]
        status, html, r = await b.get("/dashboard/phones")
        assert status == 200 and "茶铺" in html and r.headers["Cache-Control"] == "no-store"
        assert "form-action 'self'" in r.headers["Content-Security-Policy"]
        assert field(html, "csrf") == csrf_token(session_id)

    def rows(tx: Any) -> list[Any]:
        return [tuple(r) for r in tx.all("SELECT * FROM sessions")]

    stored = await bridge.ctx.db.read(rows)
    assert len(stored) == 1 and stored[0][0] == hash_secret(session_id) and session_id not in repr(stored)


async def test_https_public_url_makes_the_cookie_secure(tmp_path: Path) -> None:
    """With an https public URL the session cookie is also Secure."""
    settings = make_settings(tmp_path / "data", public_url="https://pay.example.com")
    async with running_bridge(settings) as bridge:
        m = await bridge.merchant()
        async with Browser(bridge) as b:
            _, html, _ = await b.get("/dashboard/sign-in")
            # The cookie jar refuses Secure cookies over http, so send the form's own cookie by hand.
            token = field(html, "csrf")
            async with b.session.post(
                bridge.base_url + "/dashboard/sign-in",
                data={"csrf": token, "secret": m["api_key"]},
                headers={"Cookie": f"pb_sign_in={token}"},
                allow_redirects=False,
            ) as r:
                assert r.status == 303
                cookie = next(v for k, v in r.headers.items() if k == "Set-Cookie" and "pb_session=" in v)
                assert "Secure" in cookie and "HttpOnly" in cookie


async def test_wrong_key_is_refused_and_rate_limited(bridge: RunningBridge) -> None:
    """A wrong key answers 401 with the form again; after five failures from one address, 429 even for a
    right key, with Retry-After."""
    m = await bridge.merchant()
    async with Browser(bridge) as b:
        for _ in range(5):
            status, html, _ = await b.sign_in("pbk_wrong-key-000000000000000000")
            assert status == 401 and 'id="sign-in-error"' in html and "not valid" in html
        status, html, r = await b.sign_in(m["api_key"])
        assert status == 429 and "Too many" in html and int(r.headers["Retry-After"]) >= 1
        status, _, _ = await b.get("/dashboard/phones")
        assert status == 303  # still signed out


async def test_sign_in_form_needs_its_csrf_token(bridge: RunningBridge) -> None:
    """A sign-in post without the form's token (a cross-site login attempt) is refused with 403."""
    m = await bridge.merchant()
    async with Browser(bridge) as b:
        status, _, _ = await b.post("/dashboard/sign-in", {"secret": m["api_key"]})
        assert status == 403
        await b.get("/dashboard/sign-in")
        status, _, _ = await b.post("/dashboard/sign-in", {"csrf": "forged", "secret": m["api_key"]})
        assert status == 403


async def test_forms_without_the_csrf_token_are_refused(bridge: RunningBridge) -> None:
    """Every POST of a signed-in session needs the session's CSRF token: missing or wrong is 403 and
    changes nothing; the right one works."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"], "收银台")
    async with Browser(bridge) as b:
        await b.sign_in(m["api_key"])
        path = f"/dashboard/phones/{device.device_id}/revoke"
        for data in ({}, {"csrf": "0" * 40}):
            status, html, _ = await b.post(path, data)
            assert status == 403 and "security token" in html
        _, body = await bridge.call("GET", f"/v1/devices/{device.device_id}", token=m["api_key"])
        assert body["revoked"] is False
        status, _, r = await b.post(path, {"csrf": await b.csrf()})
        assert status == 303 and r.headers["Location"] == "/dashboard/phones"
        _, html, _ = await b.get("/dashboard/phones")
        assert "收银台" not in html and "1 revoked phone(s) not listed." in html
        _, body = await bridge.call("GET", f"/v1/devices/{device.device_id}", token=m["api_key"])
        assert body["revoked"] is True


async def test_sign_out_ends_the_session_server_side(bridge: RunningBridge) -> None:
    """Signing out deletes the session: the old cookie, replayed, no longer opens a page."""
    m = await bridge.merchant()
    async with Browser(bridge) as b:
        _, _, r = await b.sign_in(m["api_key"])
        old = r.cookies["pb_session"].value
        status, _, r = await b.post("/dashboard/sign-out", {"csrf": await b.csrf()})
        assert status == 303 and r.headers["Location"] == "/dashboard/sign-in"
    async with Browser(bridge) as replay:
        status, _, _ = await replay.get("/dashboard/phones", headers={"Cookie": f"pb_session={old}"})
        assert status == 303


async def test_idle_sessions_expire(tmp_path: Path) -> None:
    """A session unused for longer than dashboard_idle_timeout is gone; one used within it lives on."""
    clock = SystemClock()
    settings = make_settings(tmp_path / "data", dashboard_idle_timeout=600)
    async with running_bridge(settings, clock=clock) as bridge:
        m = await bridge.merchant()
        async with Browser(bridge) as b:
            await b.sign_in(m["api_key"])
            clock.offset_ms += 500_000
            assert (await b.get("/dashboard/phones"))[0] == 200  # activity recorded
            clock.offset_ms += 500_000
            assert (await b.get("/dashboard/phones"))[0] == 200  # 500 s after the last request
            clock.offset_ms += 601_000
            status, _, r = await b.get("/dashboard/phones")
            assert status == 303 and r.headers["Location"] == "/dashboard/sign-in"


async def test_admin_token_signs_in_as_admin(bridge: RunningBridge) -> None:
    """The admin token opens the admin's view; merchant pages tell the admin to use a merchant key."""
    async with Browser(bridge) as b:
        status, _, r = await b.sign_in(ADMIN_TOKEN)
        assert status == 303
        status, _, r = await b.get("/dashboard")
        assert status == 303 and r.headers["Location"] == "/dashboard/admin"


async def test_a_merchant_sees_nothing_of_another_by_url_guessing(bridge: RunningBridge) -> None:
    """Merchant B's session gets 404 for merchant A's phone pages and cannot revoke A's phone."""
    a = await bridge.merchant("A")
    b_merchant = await bridge.merchant("B")
    phone = await bridge.pair(a["api_key"], "A-phone")
    async with Browser(bridge) as b:
        await b.sign_in(b_merchant["api_key"])
        status, html, _ = await b.get("/dashboard/phones")
        assert status == 200 and "A-phone" not in html and phone.device_id not in html
        status, html, _ = await b.get(f"/dashboard/phones/{phone.device_id}/revoke")
        assert status == 404 and "A-phone" not in html
        status, _, _ = await b.post(f"/dashboard/phones/{phone.device_id}/revoke", {"csrf": await b.csrf()})
        assert status == 404
    _, body = await bridge.call("GET", f"/v1/devices/{phone.device_id}", token=a["api_key"])
    assert body["revoked"] is False


async def test_pages_speak_chinese_by_default(bridge: RunningBridge) -> None:
    """Without an English preference the sign-in page is Chinese."""
    async with Browser(bridge, lang="zh-CN") as b:
        status, html, _ = await b.get("/dashboard/sign-in")
        assert status == 200 and "登录控制台" in html and 'lang="zh-CN"' in html


def test_both_languages_have_every_text() -> None:
    """Chinese and English carry the same keys (a missing one would be a 500 in that language)."""
    from bridge.web.dashboard.text import TEXT

    assert TEXT["zh"].keys() == TEXT["en"].keys()


async def test_orders_filters_detail_and_close(bridge: RunningBridge) -> None:
    """The orders list filters by status, channel, date and merchant order id; a pending order closes
    from its detail page, whose timeline then shows order.closed."""
    m = await bridge.merchant()
    key = m["api_key"]
    a = await bridge.order(key, "10.00", merchant_order_id="A-1", channel="alipay")
    w = await bridge.order(key, "11.00", merchant_order_id="W-1", channel="wechat")
    async with Browser(bridge) as b:
        await b.sign_in(key)
        _, html, _ = await b.get("/dashboard/orders")
        assert "A-1" in html and "W-1" in html
        _, html, _ = await b.get("/dashboard/orders?channel=wechat")
        assert "W-1" in html and "A-1" not in html
        _, html, _ = await b.get("/dashboard/orders?ref=A-1")
        assert "A-1" in html and "W-1" not in html
        _, html, _ = await b.get("/dashboard/orders?from=2000-01-01&to=2000-01-02")
        assert 'id="no-orders"' in html
        status, html, _ = await b.get("/dashboard/orders?status=bogus")
        assert status == 400 and "status must be one of" in html
        status, html, _ = await b.get("/dashboard/orders?from=yesterday")
        assert status == 400
        status, _, r = await b.post(f"/dashboard/orders/{a['id']}/close", {"csrf": await b.csrf()})
        assert status == 303 and r.headers["Location"] == f"/dashboard/orders/{a['id']}?done=closed"
        _, html, _ = await b.get(f"/dashboard/orders/{a['id']}?done=closed")
        assert "The order is closed." in html and 'data-type="order.closed"' in html
        _, html, _ = await b.get("/dashboard/orders?status=closed")
        assert "A-1" in html and "W-1" not in html
        status, html, _ = await b.post(f"/dashboard/orders/{a['id']}/close", {"csrf": await b.csrf()})
        assert status == 409 and "only pending orders can be closed" in html
    assert w["status"] == "pending"


async def test_unmatched_payment_ignored_in_one_click(bridge: RunningBridge) -> None:
    """A payment of an amount no order has waits in the queue with its reason and no suggestion;
    'Ignore' takes it out of the queue."""
    m = await bridge.merchant()
    key = m["api_key"]
    device = await bridge.pair(key)
    await device.connect()
    ack = await device.pay(777)
    async with Browser(bridge) as b:
        await b.sign_in(key)
        _, html, _ = await b.get("/dashboard/payments")
        assert "¥7.77" in html and "no order with this amount" in html and "No pending or recently" in html
        status, _, _ = await b.post(f"/dashboard/payments/{ack['payment_id']}/ignore", {"csrf": await b.csrf()})
        assert status == 303
        _, html, _ = await b.get("/dashboard/payments?done=ignored")
        assert 'id="no-unmatched"' in html and "ignored by the merchant" in html
    await device.close()


async def test_webhook_endpoints_add_rotate_test_remove(bridge: RunningBridge) -> None:
    """Adding an endpoint shows its secret once (the list never shows it again); rotating shows the new
    one once; a test event is signed and arrives at the real receiver; removing takes it off the list."""
    m = await bridge.merchant()
    key = m["api_key"]
    async with Browser(bridge) as b, running_receiver() as rec:
        await b.sign_in(key)
        csrf = await b.csrf("/dashboard/webhooks")
        form = {"csrf": csrf, "url": rec.url, "event_types": "order.paid"}
        status, html, _ = await b.post("/dashboard/webhooks", form)
        assert status == 201
        secret = re.search(r'id="secret-value">([^<]+)<', html)
        assert secret and secret.group(1).startswith("whsec_")
        _, listing, _ = await b.get("/dashboard/webhooks")
        assert rec.url in listing and secret.group(1) not in listing
        endpoint_id = re.search(r'id="endpoint-(whe_[^"]+)"', listing)
        assert endpoint_id
        ep = endpoint_id.group(1)
        status, html, _ = await b.post(f"/dashboard/webhooks/{ep}/rotate", {"csrf": csrf})
        rotated = re.search(r'id="secret-value">([^<]+)<', html)
        assert status == 200 and rotated and rotated.group(1) != secret.group(1)
        status, _, r = await b.post(f"/dashboard/webhooks/{ep}/test", {"csrf": csrf})
        assert status == 303 and "/dashboard/deliveries/dlv_" in r.headers["Location"]
        await rec.wait_for(lambda: len(rec.events("webhook.test")) == 1)
        headers, _ = rec.requests[0]
        assert "webhook-signature" in headers
        status, html, _ = await b.get(r.headers["Location"])
        assert status == 200 and "webhook.test" in html
        status, html, _ = await b.post("/dashboard/webhooks", {"csrf": csrf, "url": "ftp://x"})
        assert status == 400 and "http" in html
        status, _, _ = await b.post(f"/dashboard/webhooks/{ep}/remove", {"csrf": csrf})
        assert status == 303
        _, listing, _ = await b.get("/dashboard/webhooks")
        assert f'id="endpoint-{ep}"' not in listing


async def test_merchant_b_cannot_reach_merchant_a_objects(bridge: RunningBridge) -> None:
    """Every dashboard URL with merchant A's ids answers 404 to merchant B's session, reads and actions alike,
    and B's own lists show nothing of A."""
    a = await bridge.merchant("A")
    key = a["api_key"]
    device = await bridge.pair(key, "A-phone")
    await device.connect()
    async with running_receiver() as rec:
        await bridge.call("POST", "/v1/webhook-endpoints", token=key, json_body={"url": rec.url})
        order = await bridge.order(key, "9.00", merchant_order_id="SECRET-ORDER")
        ack = await device.pay(123)
        _, deliveries = await bridge.call("GET", "/v1/deliveries", token=key)
        _, endpoints = await bridge.call("GET", "/v1/webhook-endpoints", token=key)
        ep = endpoints["data"][0]["id"]
        dlv = deliveries["data"][0]["id"]
        b_merchant = await bridge.merchant("B")
        async with Browser(bridge) as b:
            await b.sign_in(b_merchant["api_key"])
            csrf = await b.csrf()
            for path in (
                f"/dashboard/orders/{order['id']}",
                f"/dashboard/deliveries/{dlv}",
                f"/dashboard/phones/{device.device_id}/revoke",
            ):
                status, html, _ = await b.get(path)
                assert status == 404 and "SECRET-ORDER" not in html, path
            for path, data in (
                (f"/dashboard/orders/{order['id']}/close", {}),
                (f"/dashboard/payments/{ack['payment_id']}/match", {"order_id": order["id"]}),
                (f"/dashboard/payments/{ack['payment_id']}/ignore", {}),
                (f"/dashboard/webhooks/{ep}/rotate", {}),
                (f"/dashboard/webhooks/{ep}/test", {}),
                (f"/dashboard/webhooks/{ep}/remove", {}),
                (f"/dashboard/deliveries/{dlv}/retry", {}),
                (f"/dashboard/phones/{device.device_id}/revoke", {}),
            ):
                status, _, _ = await b.post(path, {"csrf": csrf, **data})
                assert status == 404, path
            for path in ("/dashboard/orders", "/dashboard/payments", "/dashboard/webhooks", "/dashboard/phones"):
                _, html, _ = await b.get(path)
                assert "SECRET-ORDER" not in html and rec.url not in html and "A-phone" not in html, path
    _, body = await bridge.call("GET", f"/v1/orders/{order['id']}", token=key)
    assert body["status"] == "pending"
    await device.close()


async def test_accounts_add_by_url_or_picture_and_link_phones(bridge: RunningBridge) -> None:
    """A receiving account is added from a pasted URL or from an uploaded picture of the QR code (decoded
    with zxing-cpp); a picture without a QR code is refused with a clear message; a phone is linked."""
    import io

    import segno

    m = await bridge.merchant()
    key = m["api_key"]
    device = await bridge.pair(key, "收银台")
    async with Browser(bridge) as b:
        await b.sign_in(key)
        csrf = await b.csrf("/dashboard/accounts")
        form = {"csrf": csrf, "channel": "alipay", "name": "张小茶", "qr_payload": "https://qr.alipay.com/fkx1"}
        status, _, r = await b.post("/dashboard/accounts", form)
        assert status == 303 and r.headers["Location"] == "/dashboard/accounts?done=account_added"

        picture = io.BytesIO()
        segno.make("wxp://f2f0PictureTest", error="m").save(picture, kind="png", scale=6, border=4)
        upload = aiohttp.FormData()
        for k, v in {"csrf": csrf, "channel": "wechat", "name": "微信收款", "qr_payload": ""}.items():
            upload.add_field(k, v)
        upload.add_field("qr_image", picture.getvalue(), filename="code.png", content_type="image/png")
        upload.add_field("device_id", device.device_id)
        status, html, _ = await b.post("/dashboard/accounts", upload)
        assert status == 303, html

        blank = aiohttp.FormData()
        for k, v in {"csrf": csrf, "channel": "wechat", "name": "x"}.items():
            blank.add_field(k, v)
        blank.add_field("qr_image", b"not a picture at all", filename="x.png", content_type="image/png")
        status, html, _ = await b.post("/dashboard/accounts", blank)
        assert status == 400 and "not a picture" in html

        no_csrf = aiohttp.FormData()
        no_csrf.add_field("channel", "wechat")
        no_csrf.add_field("qr_image", picture.getvalue(), filename="code.png", content_type="image/png")
        status, _, _ = await b.post("/dashboard/accounts", no_csrf)
        assert status == 403

        _, accounts = await bridge.call("GET", "/v1/accounts", token=key)
        by_name = {a["name"]: a for a in accounts["data"]}
        assert by_name["微信收款"]["qr_payload"] == "wxp://f2f0PictureTest"
        assert by_name["微信收款"]["device_ids"] == [device.device_id]
        assert by_name["张小茶"]["device_ids"] == []
        acc = by_name["张小茶"]["id"]
        status, _, _ = await b.post(f"/dashboard/accounts/{acc}/link", {"csrf": csrf, "device_id": device.device_id})
        assert status == 303
        _, html, _ = await b.get("/dashboard/accounts")
        assert html.count("收银台") >= 2
    _, accounts = await bridge.call("GET", "/v1/accounts", token=key)
    assert all(a["device_ids"] == [device.device_id] for a in accounts["data"])


def test_no_text_key_hides_behind_a_dict_method() -> None:
    """Templates read texts as `t.key`, which Jinja resolves to a dict method first: no key may be named like one."""
    from bridge.web.dashboard.text import TEXT

    assert [k for k in TEXT["en"] if hasattr(dict, k)] == []


async def test_a_photo_larger_than_the_json_body_limit_uploads(bridge: RunningBridge) -> None:
    """A real photo of a QR code is bigger than the API's 64 KiB body limit: the upload form still takes it
    (up to 4 MiB) and finds the code among noise; a larger file is refused with a clear message."""
    import io
    import random

    import segno
    from PIL import Image

    rng = random.Random(7)
    photo = Image.frombytes("RGB", (900, 900), bytes(rng.getrandbits(8) for _ in range(900 * 900 * 3)))
    code = io.BytesIO()
    segno.make("https://qr.alipay.com/fkxPhotoTest", error="m").save(code, kind="png", scale=10, border=4)
    photo.paste(Image.open(io.BytesIO(code.getvalue())).convert("RGB"), (200, 200))
    data = io.BytesIO()
    photo.save(data, format="PNG")
    assert len(data.getvalue()) > 1024 * 1024
    m = await bridge.merchant()
    async with Browser(bridge) as b:
        await b.sign_in(m["api_key"])
        csrf = await b.csrf("/dashboard/accounts")
        for picture, expected in ((data.getvalue(), 303), (b"\0" * (5 * 1024 * 1024), 400)):
            upload = aiohttp.FormData()
            for k, v in {"csrf": csrf, "channel": "alipay", "name": "照片"}.items():
                upload.add_field(k, v)
            upload.add_field("qr_image", io.BytesIO(picture), filename="photo.png", content_type="image/png")
            status, html, _ = await b.post("/dashboard/accounts", upload)
            assert status == expected, html
    _, accounts = await bridge.call("GET", "/v1/accounts", token=m["api_key"])
    assert [a["qr_payload"] for a in accounts["data"]] == ["https://qr.alipay.com/fkxPhotoTest"]


async def test_live_fragments_and_feed_need_a_session(bridge: RunningBridge) -> None:
    """Without a session the live fragment and the SSE feed answer 401 (never the sign-in page in place of
    the fragment); with one, the fragment is the bare list and the feed is an event stream."""
    m = await bridge.merchant()
    async with Browser(bridge) as b:
        status, html, _ = await b.get("/dashboard/phones?fragment=1")
        assert status == 401 and "<html" in html
        status, _, _ = await b.get("/dashboard/live", headers={"Accept": "text/event-stream"})
        assert status == 401
        await b.sign_in(m["api_key"])
        status, html, _ = await b.get("/dashboard/phones?fragment=1")
        assert status == 200 and "<html" not in html and 'id="no-phones"' in html
        async with b.session.get(bridge.base_url + "/dashboard/live", headers={"Accept": "text/event-stream"}) as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
            assert (await r.content.readline()).startswith(b"retry:")


async def test_orders_page_through_older_orders(bridge: RunningBridge) -> None:
    """Past 50 orders an 'older' link carries the filters and the last id; the second page has the rest."""
    m = await bridge.merchant()
    key = m["api_key"]
    for i in range(52):
        await bridge.order(key, f"{1 + i}.00", merchant_order_id=f"P-{i:03d}")
    async with Browser(bridge) as b:
        await b.sign_in(key)
        _, html, _ = await b.get("/dashboard/orders?status=pending")
        assert html.count('<tr id="order-') == 50 and "P-051" in html and "P-001" not in html
        more = re.search(r'href="(/dashboard/orders\?[^"]+)" id="more"', html)
        assert more and "status=pending" in more.group(1)
        _, html, _ = await b.get(more.group(1).replace("&amp;", "&"))
        assert html.count('<tr id="order-') == 2 and "P-001" in html and "P-000" in html
        assert 'id="more"' not in html
