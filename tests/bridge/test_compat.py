"""Shop gateways end to end on a real bridge: the requests real shop software sends (known-answer vectors)
create the right orders; bad signs, changed parameters, unknown types and malformed input create none."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bridge.core import epay
from tests import pg
from tests.bridge.compat_helpers import compat_shop, get_raw, orders_of, path_of, post_form
from tests.bridge.compat_vectors import key, needs_vectors, requests_of, rsa_keys
from tests.harness import RunningBridge, make_settings, running_bridge

V1_URL_CLIENTS = ("v2board", "xboard")


async def test_credentials(bridge: RunningBridge) -> None:
    """GET /v1/compat gives pid (>= 1000, in order), a 32-character key and the gateway URLs; rotate
    changes only the key; PUT registers the merchant's RSA key; all need the merchant key."""
    first = await compat_shop(bridge)
    second = await compat_shop(bridge)
    assert (first.compat["pid"], second.compat["pid"]) == (1000, 1001)
    c = second.compat
    base = bridge.base_url
    assert set(c) == {"pid", "key", "epay_url", "submit_url", "vmq_url", "platform_public_key", "merchant_public_key"}
    assert re.fullmatch(r"[A-Za-z0-9]{32}", c["key"]) and c["key"] != first.compat["key"]
    assert c["epay_url"] == f"{base}/" and c["submit_url"] == f"{base}/submit.php"
    assert c["vmq_url"] == f"{base}/vmq/1001/" and c["merchant_public_key"] is None
    epay.load_public_key(c["platform_public_key"])
    status, again = await bridge.call("GET", "/v1/compat", token=second.api_key)
    assert status == 200 and again == c
    status, rotated = await bridge.call("POST", "/v1/compat/rotate", token=second.api_key)
    assert status == 200 and rotated["key"] != c["key"] and {**rotated, "key": c["key"]} == c
    merchant_pub = rsa_keys()["merchant_public_key"] if rsa_keys_available() else None
    if merchant_pub:
        status, put = await bridge.call(
            "PUT", "/v1/compat", token=second.api_key, json_body={"merchant_public_key": merchant_pub}
        )
        assert status == 200 and put["merchant_public_key"] == merchant_pub
    for bad in ("not a key", "", 42):
        status, err = await bridge.call(
            "PUT", "/v1/compat", token=second.api_key, json_body={"merchant_public_key": bad}
        )
        assert status == 400, err
    status, err = await bridge.call("GET", "/v1/compat")
    assert status == 401 and err["error"]["code"] == "unauthorized"


def rsa_keys_available() -> bool:
    try:
        rsa_keys()
    except KeyError:
        return False
    return True


def _request_params(vector: dict[str, Any]) -> dict[str, str]:
    return dict(vector["params"] if "params" in vector else vector["form"]["fields"])


@needs_vectors
@pytest.mark.parametrize(("client", "vector"), requests_of("v2board", "xboard", "dujiaoka-yipay", "sdk-v1"))
async def test_v1_vector_requests_make_orders(bridge: RunningBridge, client: str, vector: dict[str, Any]) -> None:
    """The exact request each real client sends redirects to the checkout page of an order with the asked
    amount and type; sending it again gives the same order."""
    shop = await compat_shop(bridge, key=key(), pid=1001)
    params = _request_params(vector)
    url = vector.get("url") or vector.get("link")
    path = path_of(url) if url else "/submit.php?" + urlencode(params)
    status, _, headers = await get_raw(bridge, path)
    assert status == 302, headers
    order_id = headers["Location"].rsplit("/", 1)[1]
    assert headers["Location"] == f"{bridge.base_url}/pay/{order_id}"
    status, order = await bridge.call("GET", f"/v1/orders/{order_id}", token=shop.api_key)
    assert status == 200
    assert order["merchant_order_id"] == params["out_trade_no"]
    assert order["amount_cents"] == epay.money_fen(params["money"])
    assert order["channel"] == epay.channel_for_type(params.get("type"))
    assert order["notify_url"] is None  # no Standard Webhooks to the shop's notify URL
    again = await get_raw(bridge, path)
    assert again[0] == 302 and again[2]["Location"] == headers["Location"]
    assert len(await orders_of(bridge, shop.api_key)) == 1


@needs_vectors
@pytest.mark.parametrize(("client", "vector"), requests_of("sdk-v1")[:1])
async def test_v1_post_form_and_double_slash(bridge: RunningBridge, client: str, vector: dict[str, Any]) -> None:
    """The SDK's pagePay POSTs a form; v2board with a base ending in / requests //submit.php."""
    shop = await compat_shop(bridge, key=key(), pid=1001)
    params = _request_params(vector)
    status, _, headers = await post_form(bridge, "/submit.php", params)
    assert status == 302
    status2, _, headers2 = await get_raw(bridge, "//submit.php?" + urlencode(params))
    assert status2 == 302 and headers2["Location"] == headers["Location"]
    assert len(await orders_of(bridge, shop.api_key)) == 1


def _signed(params: dict[str, str], k: str) -> dict[str, str]:
    return {**params, "sign": epay.md5_sign(params, k), "sign_type": "MD5"}


def _base_params(pid: int, **over: str) -> dict[str, str]:
    p = {
        "pid": str(pid),
        "type": "alipay",
        "out_trade_no": "T1",
        "notify_url": "http://127.0.0.1:9/notify",
        "return_url": "http://127.0.0.1:9/return",
        "name": "VIP",
        "money": "10",
    }
    p.update(over)
    return {k: v for k, v in p.items() if v != "-"}


async def test_submit_refusals_make_no_order(bridge: RunningBridge) -> None:
    """Bad sign, unknown pid, unknown type, bad money, bad out_trade_no, changed parameters and oversized
    input each give an HTML error page and leave no order behind."""
    shop = await compat_shop(bridge)
    pid, k = shop.compat["pid"], shop.key
    good = _signed(_base_params(pid), k)
    cases: list[tuple[str, dict[str, str], int, str]] = [
        ("bad sign", {**good, "sign": "0" * 32}, 401, "invalid_sign"),
        ("uppercase sign", {**good, "sign": good["sign"].upper()}, 401, "invalid_sign"),
        ("tampered money", {**good, "money": "0.01"}, 401, "invalid_sign"),
        ("unknown pid", _signed(_base_params(999999), k), 404, "unknown_pid"),
        ("no pid", {k2: v for k2, v in good.items() if k2 != "pid"}, 400, "invalid_pid"),
        ("unknown type", _signed(_base_params(pid, type="qqpay"), k), 400, "unsupported_type"),
        ("bad money", _signed(_base_params(pid, money="10.001"), k), 400, "invalid_money"),
        ("zero money", _signed(_base_params(pid, money="0"), k), 400, "invalid_money"),
        ("no money", _signed(_base_params(pid, money="-"), k), 400, "invalid_money"),
        ("bad out_trade_no", _signed(_base_params(pid, out_trade_no="订单 1"), k), 400, "invalid_out_trade_no"),
        ("bad notify_url", _signed(_base_params(pid, notify_url="ftp://x/"), k), 400, "invalid_url"),
        ("long name", _signed(_base_params(pid, name="n" * 300), k), 400, "invalid_name"),
        ("oversized value", _signed(_base_params(pid, name="n" * 5000), k), 413, "parameter_too_long"),
        ("md5 via rsa type", {**good, "sign_type": "RSA"}, 400, "invalid_sign_type"),
    ]
    for label, params, want_status, want_code in cases:
        status, body, headers = await get_raw(bridge, "/submit.php?" + urlencode(params))
        assert status == want_status, (label, body)
        assert headers["Content-Type"].startswith("text/html") and want_code in body, (label, body)
    duplicated = "/submit.php?" + urlencode(good) + "&money=10"
    status, body, _ = await get_raw(bridge, duplicated)
    assert status == 400 and "duplicate_parameter" in body
    status, body, _ = await get_raw(bridge, "/submit.php?pid=%ff%fe")
    assert status == 400 and "invalid_encoding" in body
    assert await orders_of(bridge, shop.api_key) == []
    # the good one makes an order; the same out_trade_no with another amount is refused
    status, _, _ = await get_raw(bridge, "/submit.php?" + urlencode(good))
    assert status == 302
    changed = _signed(_base_params(pid, money="11"), k)
    status, body, _ = await get_raw(bridge, "/submit.php?" + urlencode(changed))
    assert status == 409 and "out_trade_no_conflict" in body
    assert len(await orders_of(bridge, shop.api_key)) == 1


async def test_concurrent_mapi_of_one_out_trade_no_make_one_order(tmp_path: Path) -> None:
    """Ten simultaneous mapi.php requests for one out_trade_no all answer code 1 with the same trade_no
    (one order, one compat row); on PostgreSQL they go to two bridges sharing the database."""
    key_file = str(tmp_path / "secrets.key")
    a_settings = make_settings(tmp_path / "a", secrets_key_file=key_file)
    b_settings = make_settings(tmp_path / "b", database_url=a_settings.database_url, secrets_key_file=key_file)
    async with running_bridge(a_settings) as a, contextlib.AsyncExitStack() as stack:
        bridges = [a]
        if pg.e2e_on_postgres():  # SQLite has one writer per file: a second bridge would only queue behind it
            bridges.append(await stack.enter_async_context(running_bridge(b_settings)))
        shop = await compat_shop(a)
        for round_ in range(3):
            form = _signed(_base_params(shop.compat["pid"], money="8.8", out_trade_no=f"RACE{round_}"), shop.key)
            answers = await asyncio.gather(
                *(post_form(bridges[i % len(bridges)], "/mapi.php", form) for i in range(10))
            )
            outs = [json.loads(text) for _, text, _ in answers]
            assert [o["code"] for o in outs] == [1] * 10, outs
            assert len({o["trade_no"] for o in outs}) == 1
        assert len(await orders_of(a, shop.api_key)) == 3


async def test_mapi(bridge: RunningBridge) -> None:
    """mapi.php answers code 1 with trade_no, payurl and the money string as sent; refusals are negative codes."""
    shop = await compat_shop(bridge)
    pid, k = shop.compat["pid"], shop.key
    form = _signed(_base_params(pid, money="10.5", out_trade_no="M1", clientip="203.0.113.7", device="pc"), k)
    status, text, _ = await post_form(bridge, "/mapi.php", form)
    out = json.loads(text)
    assert status == 200 and out["code"] == 1, out
    assert out["payurl"] == f"{bridge.base_url}/pay/{out['trade_no']}" and out["money"] == "10.5"
    assert json.loads((await post_form(bridge, "/mapi.php", form))[1])["trade_no"] == out["trade_no"]
    for bad in (
        {**form, "sign": "x"},
        _signed(_base_params(pid, type="tenpay", out_trade_no="M2"), k),
        _signed(_base_params(pid, money="abc", out_trade_no="M3"), k),
        _signed(_base_params(pid, money="11", out_trade_no="M1"), k),
    ):
        res = json.loads((await post_form(bridge, "/mapi.php", bad))[1])
        assert res["code"] < 0 and res["msg"], res
    big = {**form, "name": "x" * 70_000}
    res = json.loads((await post_form(bridge, "/mapi.php", big))[1])
    assert res["code"] < 0
    assert len(await orders_of(bridge, shop.api_key)) == 1


async def test_api_php(bridge: RunningBridge) -> None:
    """api.php?act=order finds an order by trade_no or out_trade_no with the plain key; status is 0 until paid."""
    shop = await compat_shop(bridge)
    pid, k = shop.compat["pid"], shop.key
    status, _, headers = await get_raw(bridge, "/submit.php?" + urlencode(_signed(_base_params(pid, param="u=1"), k)))
    order_id = headers["Location"].rsplit("/", 1)[1]
    for query in (f"trade_no={order_id}", "out_trade_no=T1"):
        status, out = await bridge.call("GET", f"/api.php?act=order&pid={pid}&key={k}&{query}")
        assert status == 200 and out["code"] == 1, out
        assert (out["trade_no"], out["out_trade_no"], out["status"], out["money"], out["type"], out["param"]) == (
            order_id,
            "T1",
            0,
            "10",
            "alipay",
            "u=1",
        )
    status, out = await bridge.call("GET", f"/api.php?act=query&pid={pid}&key={k}")
    assert out["code"] == 1 and out["pid"] == pid and "key" not in out
    for bad in (
        f"act=order&pid={pid}&key={'x' * 32}&trade_no={order_id}",
        f"act=order&pid={pid}&key={k}&trade_no=ord_nope",
        f"act=refund&pid={pid}&key={k}",
    ):
        status, out = await bridge.call("GET", f"/api.php?{bad}")
        assert status == 200 and out["code"] < 0, out
    other = await compat_shop(bridge)
    status, out = await bridge.call(
        "GET", f"/api.php?act=order&pid={other.compat['pid']}&key={other.key}&trade_no={order_id}"
    )
    assert out["code"] < 0, "another merchant's order is not found"


async def test_monitor_endpoints_are_not_served(bridge: RunningBridge) -> None:
    """V免签's appPush / appHeart (replayable MD5 pushes) do not exist here."""
    shop = await compat_shop(bridge)
    for name in ("appPush", "appHeart"):
        status, _, _ = await get_raw(bridge, f"/vmq/{shop.compat['pid']}/{name}?t=1&sign=x")
        assert status == 404


async def test_public_url_setting(tmp_path: Path) -> None:
    """Every URL handed out is built from public_url when it is set."""
    async with running_bridge(make_settings(tmp_path, public_url="https://pay.example.net")) as bridge:
        shop = await compat_shop(bridge)
        assert shop.compat["submit_url"] == "https://pay.example.net/submit.php"
        assert shop.compat["vmq_url"] == f"https://pay.example.net/vmq/{shop.compat['pid']}/"
        status, _, headers = await get_raw(
            bridge, "/submit.php?" + urlencode(_signed(_base_params(shop.compat["pid"]), shop.key))
        )
        assert status == 302 and headers["Location"].startswith("https://pay.example.net/pay/ord_")


async def test_shop_urls_obey_the_webhook_ssrf_rules(tmp_path: Path) -> None:
    """Without PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS, a loopback, private or metadata notify_url or return_url
    is refused up front (no order); a public name is accepted."""
    async with running_bridge(make_settings(tmp_path, allow_private_webhooks=False)) as bridge:
        shop = await compat_shop(bridge)
        pid, k = shop.compat["pid"], shop.key
        for field, url in (
            ("notify_url", "http://127.0.0.1:8080/notify"),
            ("notify_url", "http://169.254.169.254/latest"),
            ("return_url", "http://10.0.0.1/back"),
            ("notify_url", "http://[::1]/n"),
        ):
            public = {"notify_url": "https://shop.example.com/n", "return_url": "https://shop.example.com/r"}
            params = _signed(_base_params(pid, **{**public, field: url}), k)
            status, body, _ = await get_raw(bridge, "/submit.php?" + urlencode(params))
            assert status == 400 and f"{field}: loopback, private or metadata" in body, (field, url, body)
        assert await orders_of(bridge, shop.api_key) == []
        ok = _signed(
            _base_params(pid, notify_url="https://shop.example.com/n", return_url="https://shop.example.com/r"), k
        )
        status, _, _ = await get_raw(bridge, "/submit.php?" + urlencode(ok))
        assert status == 302
