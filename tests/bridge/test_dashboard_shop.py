"""The dashboard's shop settings page over plain HTTP: the compat credentials masked until asked for, the
settings to paste (the structure `paybridge compat` prints), key rotation, the V2 public key, and
merchants kept apart. The browser test is in test_dashboard_browser.py's neighbour,
test_dashboard_shop_browser.py."""

from __future__ import annotations

import html as html_lib
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bridge.core import epay
from bridge.services.compat import key_fingerprint
from bridge.services.shop_setup import shop_setups
from bridge.web.dashboard.shop import masked
from tests.bridge.compat_helpers import get_raw
from tests.bridge.test_dashboard import Browser, field
from tests.harness import ADMIN_TOKEN, RunningBridge


async def _compat(bridge: RunningBridge, api_key: str) -> dict[str, Any]:
    status, creds = await bridge.call("GET", "/v1/compat", token=api_key)
    assert status == 200, creds
    return dict(creds)


def _submit(pid: int, key: str, out_trade_no: str) -> str:
    """A dujiaoka-style signed submit.php link."""
    params = {
        "pid": str(pid),
        "type": "alipay",
        "out_trade_no": out_trade_no,
        "notify_url": "http://127.0.0.1:9/notify",
        "return_url": "http://127.0.0.1:9/return",
        "name": "VIP",
        "money": "10",
    }
    return "/submit.php?" + urlencode({**params, "sign": epay.md5_sign(params, key), "sign_type": "MD5"})


async def test_the_page_masks_the_key_and_shows_each_shops_settings(bridge: RunningBridge) -> None:
    """The page shows pid, the URLs, the platform key and every shop's settings as `paybridge compat` has them,
    with the key masked; "show the key" is a CSRF-checked POST whose no-store answer has it in every place."""
    m = await bridge.merchant("茶铺")
    async with Browser(bridge) as b:
        await b.sign_in(m["api_key"])
        status, page, r = await b.get("/dashboard/shop")
        creds = await _compat(bridge, m["api_key"])
        key = creds["key"]
        assert status == 200 and r.headers["Cache-Control"] == "no-store"
        assert key not in page and page.count(masked(key)) == 6
        for value in (creds["submit_url"], creds["vmq_url"], creds["platform_public_key"], f">{creds['pid']}<"):
            assert value in page, value
        for setup in shop_setups(creds):
            assert f'id="setup-{setup.id}"' in page
            for f in setup.fields:
                assert f.secret or f">{html_lib.escape(f.value)}<" in page, (setup.id, f.label)
        assert '<a href="/dashboard/shop" aria-current="page">Shop</a>' in page  # the tab
        csrf = await b.csrf("/dashboard/shop")
        status, refused, _ = await b.post("/dashboard/shop/reveal", {})
        assert status == 403 and key not in refused
        status, shown, r = await b.post("/dashboard/shop/reveal", {"csrf": csrf})
        assert status == 200 and shown.count(key) == 6 and r.headers["Cache-Control"] == "no-store"
        assert masked(key) not in shown and 'id="hide-key"' in shown


async def test_rotation_needs_csrf_and_the_old_key_stops_signing(bridge: RunningBridge) -> None:
    """Rotating asks for confirmation; without the CSRF token it changes nothing; with it the new key is
    shown once in full, and a submit.php link signed with the old key is refused while the new key's works."""
    m = await bridge.merchant()
    old = await _compat(bridge, m["api_key"])
    status, _, headers = await get_raw(bridge, _submit(old["pid"], old["key"], "T1"))
    assert status == 302 and "/pay/" in headers["Location"]
    async with Browser(bridge) as b:
        await b.sign_in(m["api_key"])
        status, confirm, _ = await b.get("/dashboard/shop/rotate")
        assert status == 200 and 'id="rotate-form"' in confirm and old["key"] not in confirm
        assert masked(old["key"]) in confirm
        fingerprint = field(confirm, "key")
        assert fingerprint == key_fingerprint(old["key"])
        for data in ({"key": fingerprint}, {"csrf": "0" * 40, "key": fingerprint}):
            status, _, _ = await b.post("/dashboard/shop/rotate", data)
            assert status == 403
        csrf = field(confirm, "csrf")
        status, _, _ = await b.post("/dashboard/shop/rotate", {"csrf": csrf})
        assert status == 400
        assert (await _compat(bridge, m["api_key"]))["key"] == old["key"]
        form = {"csrf": csrf, "key": fingerprint}
        status, page, _ = await b.post("/dashboard/shop/rotate", form)
        new = await _compat(bridge, m["api_key"])
        assert status == 200 and new["key"] != old["key"] and {**new, "key": old["key"]} == old
        assert 'id="rotated"' in page and page.count(new["key"]) == 6 and old["key"] not in page
        status, page, _ = await b.post("/dashboard/shop/rotate", form)  # a reload sends the form again
        assert status == 200 and 'id="already-rotated"' in page and page.count(new["key"]) == 6
        assert (await _compat(bridge, m["api_key"]))["key"] == new["key"]
        _, later, _ = await b.get("/dashboard/shop")
        assert new["key"] not in later and masked(new["key"]) in later
    status, body, _ = await get_raw(bridge, _submit(old["pid"], old["key"], "T2"))
    assert status == 401 and "invalid_sign" in body
    status, _, headers = await get_raw(bridge, _submit(new["pid"], new["key"], "T2"))
    assert status == 302 and "/pay/" in headers["Location"]


async def test_the_merchant_public_key_is_registered_and_cleared(bridge: RunningBridge) -> None:
    """A pasted PEM key is registered (as base64 SPKI, like PUT /v1/compat); a malformed one is refused on the
    page with its reason and changes nothing; "clear" removes it; each needs the CSRF token."""
    m = await bridge.merchant()
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    text = pem.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    async with Browser(bridge) as b:
        await b.sign_in(m["api_key"])
        status, page, _ = await b.get("/dashboard/shop")
        assert status == 200 and "None registered" in page and 'id="clear-public-key"' not in page
        form = {"action": "save", "merchant_public_key": text}
        assert (await b.post("/dashboard/shop/public-key", form))[0] == 403
        csrf = await b.csrf("/dashboard/shop")
        status, _, r = await b.post("/dashboard/shop/public-key", {"csrf": csrf, **form})
        assert status == 303 and r.headers["Location"] == "/dashboard/shop?done=public_key_saved"
        registered = (await _compat(bridge, m["api_key"]))["merchant_public_key"]
        assert registered == epay.public_key_b64(pem)
        _, page, _ = await b.get(r.headers["Location"])
        assert 'id="done"' in page and registered in page and 'id="clear-public-key"' in page
        bad = {"csrf": csrf, "action": "save", "merchant_public_key": "MIIBnotakey"}
        status, page, _ = await b.post("/dashboard/shop/public-key", bad)
        assert status == 400 and 'id="public-key-error"' in page and "base64 SPKI or PEM" in page
        assert (await _compat(bridge, m["api_key"]))["merchant_public_key"] == registered
        status, _, _ = await b.post("/dashboard/shop/public-key", {"csrf": csrf, "action": "save"})
        assert status == 400
        status, _, r = await b.post("/dashboard/shop/public-key", {"csrf": csrf, "action": "clear"})
        assert status == 303 and r.headers["Location"].endswith("done=public_key_cleared")
        assert (await _compat(bridge, m["api_key"]))["merchant_public_key"] is None


async def test_a_merchant_sees_and_changes_only_its_own_settings(bridge: RunningBridge) -> None:
    """Merchant B's page shows B's pid and keys, nothing of A's; B's rotation and public key leave A's alone."""
    a = await bridge.merchant("A")
    a_creds = await _compat(bridge, a["api_key"])
    b_merchant = await bridge.merchant("B")
    async with Browser(bridge) as b:
        await b.sign_in(b_merchant["api_key"])
        csrf = await b.csrf("/dashboard/shop")
        _, page, _ = await b.post("/dashboard/shop/reveal", {"csrf": csrf})
        b_creds = await _compat(bridge, b_merchant["api_key"])
        assert b_creds["pid"] != a_creds["pid"] and b_creds["key"] in page
        for secret in (a_creds["key"], a_creds["vmq_url"], a_creds["platform_public_key"], masked(a_creds["key"])):
            assert secret not in page
        _, confirm, _ = await b.get("/dashboard/shop/rotate")
        status, _, _ = await b.post("/dashboard/shop/rotate", {"csrf": csrf, "key": field(confirm, "key")})
        assert status == 200 and (await _compat(bridge, b_merchant["api_key"]))["key"] != b_creds["key"]
        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        key_text = epay.public_key_b64(pem)
        status, _, _ = await b.post(
            "/dashboard/shop/public-key", {"csrf": csrf, "action": "save", "merchant_public_key": key_text}
        )
        assert status == 303
    assert await _compat(bridge, a["api_key"]) == a_creds
    assert (await _compat(bridge, b_merchant["api_key"]))["merchant_public_key"] == key_text


async def test_the_admin_is_told_it_is_a_merchants_page(bridge: RunningBridge) -> None:
    """The admin's session gets a clear "merchant's page" answer (403), for the page and its actions alike."""
    async with Browser(bridge) as b:
        await b.sign_in(ADMIN_TOKEN)
        csrf = await b.csrf("/dashboard/admin")
        for method, path in (("GET", "/dashboard/shop"), ("GET", "/dashboard/shop/rotate")):
            status, page, _ = await b.get(path)
            assert status == 403 and "This is a merchant&#39;s page" in page, (method, path)
        for path in ("/dashboard/shop/reveal", "/dashboard/shop/rotate", "/dashboard/shop/public-key"):
            status, page, _ = await b.post(path, {"csrf": csrf, "action": "clear"})
            assert status == 403 and "merchant" in page, path


async def test_the_page_speaks_chinese(bridge: RunningBridge) -> None:
    """In Chinese the page, its tab and the notes of the shop settings are Chinese."""
    m = await bridge.merchant()
    async with Browser(bridge, lang="zh-CN") as b:
        await b.sign_in(m["api_key"])
        status, page, _ = await b.get("/dashboard/shop")
        assert status == 200 and "<h1>商店设置</h1>" in page and "必须以 / 结尾" in page
        assert "must end with" not in page
