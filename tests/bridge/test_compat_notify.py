"""Shop notifies end to end: a real phone pays a shop gateway order, a real local shop receiver answers
errors a few times then `success`; the notify verifies as the real clients verify it, is retried until
acknowledged and never sent again. Also 易支付 V2 (RSA) and V免签 flows."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.core import epay, vmq
from bridge.services.compat_notify import compat_return_url
from tests.bridge.compat_helpers import Shop, ShopReceiver, compat_shop, get_raw, path_of, post_form, shop_receiver
from tests.bridge.compat_vectors import key, needs_vectors, requests_of, rsa_keys
from tests.harness import RunningBridge, TestDevice, eventually, make_settings, running_bridge


def _signed(params: dict[str, str], k: str) -> dict[str, str]:
    return {**params, "sign": epay.md5_sign(params, k), "sign_type": "MD5"}


async def _phone(bridge: RunningBridge, shop: Shop) -> TestDevice:
    device = await bridge.pair(shop.api_key)
    await device.connect()
    return device


async def _order(bridge: RunningBridge, shop: Shop, order_id: str) -> dict[str, Any]:
    status, order = await bridge.call("GET", f"/v1/orders/{order_id}", token=shop.api_key)
    assert status == 200, order
    return dict(order)


async def _submit(bridge: RunningBridge, params: dict[str, str]) -> str:
    status, body, headers = await get_raw(bridge, "/submit.php?" + urlencode(params))
    assert status == 302, body
    return headers["Location"].rsplit("/", 1)[1]


async def _deliveries(bridge: RunningBridge, shop: Shop, status: str) -> list[dict[str, Any]]:
    code, page = await bridge.call("GET", f"/v1/deliveries?status={status}", token=shop.api_key)
    assert code == 200, page
    return list(page["data"])


async def _arrived(rec: ShopReceiver, n: int) -> None:
    await eventually(lambda: _count(rec), lambda c: c >= n)


async def _count(rec: ShopReceiver) -> int:
    return len(rec.requests)


@pytest.mark.parametrize("sender", ["process", "inline"])
async def test_epay_notify_retried_until_success_then_never_again(tmp_path: Path, sender: str) -> None:
    """An 易支付 order without a type, paid by WeChat: the shop gets GET notify_url?…signed (type wxpay, the
    money string it sent, its param, no empty parameter) until it answers success; then never again.
    Whether the HTTP calls run in the sender child process or in the bridge's own loop."""
    async with running_bridge(make_settings(tmp_path, webhook_sender=sender)) as bridge:
        await _epay_notify_retried_until_success(bridge)


async def _epay_notify_retried_until_success(bridge: RunningBridge) -> None:
    shop = await compat_shop(bridge)
    pid, k = shop.compat["pid"], shop.key
    device = await _phone(bridge, shop)
    async with shop_receiver([(500, "error"), (200, "fail"), (200, "success")], path="/notify?shop=1") as rec:
        params = {
            "pid": str(pid),
            "out_trade_no": "E1",
            "notify_url": rec.url,
            "return_url": "http://127.0.0.1:9/back#/order/E1",
            "name": " VIP 会员+1 ",
            "money": "10.5",
            "param": "uid=42",
        }
        order_id = await _submit(bridge, _signed(params, k))
        order = await _order(bridge, shop, order_id)
        assert order["channel"] == "any"
        await device.pay(order["pay_amount_cents"], channel="wechat", package="com.tencent.mm")
        await _arrived(rec, 3)
        await eventually(lambda: _deliveries(bridge, shop, "succeeded"), lambda d: len(d) == 1)
        assert [m for m, _, _ in rec.requests] == ["GET"] * 3  # no Standard Webhook POST reaches the shop
        first = rec.params()[0]
        for p in rec.params():
            assert p == first  # the same idempotent body on every attempt
        assert first.pop("shop") == "1"
        assert epay.md5_verify(first, k, first["sign"]) and first["sign_type"] == "MD5"
        assert {k2: v for k2, v in first.items() if k2 not in ("sign", "sign_type")} == {
            "pid": str(pid),
            "trade_no": order_id,
            "out_trade_no": "E1",
            "type": "wxpay",
            "name": "VIP 会员+1",
            "money": "10.5",
            "trade_status": "TRADE_SUCCESS",
            "param": "uid=42",
        }
        assert "%2B" in rec.requests[0][1]  # `+` URL-encoded: PHP would read a raw + as a space
        # the payer's way back carries the same signed query
        back = await compat_return_url(bridge.ctx, order_id)
        assert back is not None and back.startswith("http://127.0.0.1:9/back?") and back.endswith("#/order/E1")
        assert dict(parse_qsl(urlsplit(back).query)) == first
        # the checkout page sends the payer there by itself, and its status says so
        status, page_status = await bridge.call("GET", f"/pay/{order_id}/status")
        assert status == 200 and page_status["return_url"] == back
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{bridge.base_url}/pay/{order_id}", allow_redirects=False) as r,
        ):
            assert r.status == 302 and r.headers["Location"] == back
        # a second paid order to the same shop is a barrier: the worker went on, the first was not resent
        second = await _submit(bridge, _signed({**params, "out_trade_no": "E2", "money": "3"}, k))
        await device.pay((await _order(bridge, shop, second))["pay_amount_cents"], channel="alipay")
        await eventually(lambda: _count(rec), lambda c: c >= 4)
        await eventually(lambda: _deliveries(bridge, shop, "succeeded"), lambda d: len(d) == 2)
        assert [p["out_trade_no"] for p in rec.params()] == ["E1", "E1", "E1", "E2"]
        assert rec.params()[3]["type"] == "alipay"
        delivery = (await _deliveries(bridge, shop, "succeeded"))[-1]
        status, out = await bridge.call("POST", f"/v1/deliveries/{delivery['id']}/retry", token=shop.api_key)
        assert status == 409 and out["error"]["code"] == "notify_acknowledged"
    await device.close()


async def test_unpaid_or_unknown_orders_have_no_return_url(bridge: RunningBridge) -> None:
    """compat_return_url is None until a compat order is paid, and for orders that are not compat orders."""
    shop = await compat_shop(bridge)
    order_id = await _submit(
        bridge,
        _signed(
            {"pid": str(shop.compat["pid"]), "out_trade_no": "R1", "money": "1", "return_url": "http://127.0.0.1:9/r"},
            shop.key,
        ),
    )
    assert await compat_return_url(bridge.ctx, order_id) is None
    native = await bridge.order(shop.api_key, "2.00")
    assert await compat_return_url(bridge.ctx, native["id"]) is None


def _rsa_pair() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private, epay.public_key_b64(private.public_key())


def _v2_signed(params: dict[str, str], private: rsa.RSAPrivateKey, now_s: int) -> dict[str, str]:
    stamped = {**params, "timestamp": str(now_s)}
    return {**stamped, "sign": epay.rsa_sign(stamped, private), "sign_type": "RSA"}


def _v2_verify(shop: Shop, out: dict[str, Any], now_s: int) -> None:
    """As the V2 SDK's verify(): the string forms of every field, a timestamp within 300 s."""
    public = epay.load_public_key(shop.compat["platform_public_key"])
    fields = {k: str(v) for k, v in out.items() if v is not None and not isinstance(v, dict | list)}
    assert epay.rsa_verify(fields, public, out["sign"]) and out["sign_type"] == "RSA"
    assert epay.timestamp_fresh(str(out["timestamp"]), now_s)


async def test_epay_v2_create_query_and_fresh_notifies(bridge: RunningBridge) -> None:
    """V2: create answers pay_type jump with the checkout URL, signed by the platform; every notify attempt
    carries a fresh timestamp and signature (the clock moves 10 minutes between two attempts)."""
    shop = await compat_shop(bridge)
    pid = str(shop.compat["pid"])
    private, public_b64 = _rsa_pair()
    status, _ = await bridge.call(
        "PUT", "/v1/compat", token=shop.api_key, json_body={"merchant_public_key": public_b64}
    )
    assert status == 200
    shop.compat["platform_public_key"] = (await bridge.call("GET", "/v1/compat", token=shop.api_key))[1][
        "platform_public_key"
    ]
    device = await _phone(bridge, shop)
    stamps: list[int] = []

    async with shop_receiver([(500, "busy"), (200, "success")]) as rec:

        def on_request(n: int) -> None:  # the first attempt fails, then time jumps 10 minutes
            stamps.append(bridge.ctx.clock.now_ms() // 1000)
            if n == 1:
                bridge.ctx.clock.offset_ms += 600_000  # type: ignore[attr-defined]

        rec.on_request = on_request
        now_s = bridge.ctx.clock.now_ms() // 1000
        req = {"pid": pid, "type": "alipay", "out_trade_no": "V2A", "notify_url": rec.url, "name": "VIP", "money": "10"}
        req.update({"method": "web", "device": "pc", "clientip": "203.0.113.7"})
        status, text, _ = await post_form(bridge, "/api/pay/create", _v2_signed(req, private, now_s))
        out = json.loads(text)
        assert out["code"] == 0 and out["pay_type"] == "jump", out
        _v2_verify(shop, out, now_s)
        assert out["pay_info"] == f"{bridge.base_url}/pay/{out['trade_no']}"
        order = await _order(bridge, shop, out["trade_no"])
        await device.pay(order["pay_amount_cents"], channel="alipay")
        await _arrived(rec, 2)
        await eventually(lambda: _deliveries(bridge, shop, "succeeded"), lambda d: len(d) == 1)
        public = epay.load_public_key(shop.compat["platform_public_key"])
        sent = rec.params()
        for p, at in zip(sent, stamps, strict=True):
            assert epay.rsa_verify(p, public, p["sign"]) and p["sign_type"] == "RSA"
            assert epay.timestamp_fresh(p["timestamp"], at)
            assert (p["money"], p["type"], p["trade_status"], p["out_trade_no"]) == (
                "10",
                "alipay",
                "TRADE_SUCCESS",
                "V2A",
            )
        assert int(sent[1]["timestamp"]) - int(sent[0]["timestamp"]) >= 590
        now_s = bridge.ctx.clock.now_ms() // 1000
        q = _v2_signed({"pid": pid, "out_trade_no": "V2A"}, private, now_s)
        status, text, _ = await post_form(bridge, "/api/pay/query", q)
        out2 = json.loads(text)
        assert out2["code"] == 0 and out2["status"] == 1 and out2["trade_no"] == out["trade_no"], out2
        _v2_verify(shop, out2, now_s)
        # stale timestamp, wrong key, tampered field: refused, no order
        for bad in (
            _v2_signed({**req, "out_trade_no": "V2B"}, private, now_s - 301),
            _v2_signed({**req, "out_trade_no": "V2C"}, _rsa_pair()[0], now_s),
            {**_v2_signed({**req, "out_trade_no": "V2D"}, private, now_s), "money": "0.01"},
        ):
            res = json.loads((await post_form(bridge, "/api/pay/create", bad))[1])
            assert res["code"] != 0 and res["msg"], res
    status, page = await bridge.call("GET", "/v1/orders", token=shop.api_key)
    assert [o["merchant_order_id"] for o in page["data"]] == ["V2A"]
    await device.close()


@needs_vectors
async def test_sdk_v2_vector_requests(bridge: RunningBridge) -> None:
    """The V2 SDK's exact requests (timestamp pinned in the vector; our clock set to it) are accepted."""
    shop = await compat_shop(bridge, key=key(), pid=1001)
    status, _ = await bridge.call(
        "PUT", "/v1/compat", token=shop.api_key, json_body={"merchant_public_key": rsa_keys()["merchant_public_key"]}
    )
    assert status == 200
    for _, vector in requests_of("sdk-v2"):
        params = {**vector["input"], "sign": vector["sign"], "sign_type": vector["sign_type"]}
        bridge.ctx.clock.offset_ms = int(params["timestamp"]) * 1000 - time.time_ns() // 1_000_000  # type: ignore[attr-defined]
        status, body, headers = await post_form(bridge, "/api/pay/submit", params)
        assert status == 302, body
        replay = await post_form(bridge, "/api/pay/submit", params)  # within 300 s: the same order
        assert replay[0] == 302 and replay[2]["Location"] == headers["Location"]
        order = await _order(bridge, shop, headers["Location"].rsplit("/", 1)[1])
        assert order["merchant_order_id"] == params["out_trade_no"]
        assert order["amount_cents"] == epay.money_fen(params["money"])
        bridge.ctx.clock.offset_ms += 400_000  # type: ignore[attr-defined]
        status, body, _ = await post_form(bridge, "/api/pay/submit", params)
        assert status == 400 and "invalid_timestamp" in body  # the same request replayed later: refused


@needs_vectors
async def test_dujiaoka_vpay_vector_and_json(bridge: RunningBridge) -> None:
    """dujiaoka's V免签 createOrder?…&isHtml=1 sends the payer to the checkout page; without isHtml the same
    request answers the same order as JSON, with reallyPrice. The vectors reuse one payId with other prices:
    those are changed requests, refused without an order."""
    shop = await compat_shop(bridge, key=key(), pid=1001)
    (_, vector), *others = requests_of("dujiaoka-vpay")
    params = dict(vector["params"])
    path = urlsplit(vector["url"]).path
    assert path == "/vmq/1001/createOrder"
    status, _, headers = await get_raw(bridge, path_of(vector["url"]))
    assert status == 302
    order_id = headers["Location"].rsplit("/", 1)[1]
    params.pop("isHtml")
    status, body, _ = await get_raw(bridge, path + "?" + urlencode(params))
    out = json.loads(body)
    assert out["code"] == 1 and out["data"]["orderId"] == order_id, out
    assert out["data"]["price"] == params["price"] and out["data"]["payType"] == 2
    order = await _order(bridge, shop, order_id)
    assert out["data"]["reallyPrice"] == vmq.php_money(order["pay_amount_cents"])
    assert order["channel"] == "alipay" and order["merchant_order_id"] == params["payId"]
    for _, changed in others:
        status, body, _ = await get_raw(bridge, path_of(changed["url"]))
        assert status == 409 and "out_trade_no_conflict" in body
    status, page = await bridge.call("GET", "/v1/orders", token=shop.api_key)
    assert [o["id"] for o in page["data"]] == [order_id]


def _md5(s: str) -> str:
    return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()


async def test_vmq_flow(bridge: RunningBridge) -> None:
    """V免签: createOrder, getOrder, checkOrder (-1 until paid, then the signed return URL), the notify with
    price = asked and reallyPrice = paid (acked only by a body of exactly success), closeOrder, getState."""
    shop = await compat_shop(bridge)
    pid, k = shop.compat["pid"], shop.key
    device = await _phone(bridge, shop)
    base = f"/vmq/{pid}"

    async def call(name: str, **params: str) -> dict[str, Any]:
        status, out = await bridge.call("GET", f"{base}/{name}?{urlencode(params)}")
        assert status == 200
        return dict(out)

    def create(pay_id: str, price: str, notify: str, param: str = "", type_: str = "2") -> dict[str, str]:
        return {
            "payId": pay_id,
            "type": type_,
            "price": price,
            "param": param,
            "notifyUrl": notify,
            "returnUrl": "http://127.0.0.1:9/return",
            "sign": _md5(pay_id + param + type_ + price + k),
        }

    async with shop_receiver([(200, "ok success"), (200, " success\n")]) as rec:
        first = await call("createOrder", **create("P1", "10", rec.url, param="ORDER1"))
        assert first["code"] == 1, first
        second = await call("createOrder", **create("P2", "10", rec.url, param="ORDER2"))
        assert second["data"]["reallyPrice"] == "9.99" and second["data"]["price"] == "10"
        oid = second["data"]["orderId"]
        assert (await call("getOrder", orderId=oid))["data"]["state"] == 0
        assert (await call("checkOrder", orderId=oid))["code"] == -1
        await device.pay(999, channel="alipay")
        await _arrived(rec, 2)
        await eventually(lambda: _deliveries(bridge, shop, "succeeded"), lambda d: len(d) == 1)
        sent = rec.params()
        assert sent[0] == sent[1]
        p = sent[0]
        assert p == {
            "payId": "P2",
            "param": "ORDER2",
            "type": "2",
            "price": "10",
            "reallyPrice": "9.99",
            "sign": _md5("P2" + "ORDER2" + "2" + "10" + "9.99" + k),
        }
        checked = await call("checkOrder", orderId=oid)
        assert checked["code"] == 1 and checked["data"].startswith("http://127.0.0.1:9/return?")
        assert dict(parse_qsl(urlsplit(checked["data"]).query)) == p
        assert (await call("getOrder", orderId=oid))["data"]["state"] == 1
    # closeOrder needs md5(orderId + key)
    o1 = first["data"]["orderId"]
    assert (await call("closeOrder", orderId=o1, sign="0" * 32))["code"] == -1
    assert (await call("closeOrder", orderId=o1, sign=_md5(o1 + k)))["code"] == 1
    assert (await call("checkOrder", orderId=o1))["msg"] == "订单已过期"
    t = str(int(time.time() * 1000))
    assert (await call("getState", t=t, sign=_md5(t + k)))["data"]["jkstate"] == "1"
    assert (await call("getState", t=t, sign=_md5(t)))["code"] == -1
    # refusals: bad sign, unknown type, changed parameters, another pid's order
    assert (await call("createOrder", **{**create("P3", "5", rec.url), "sign": "x"}))["code"] == -1
    assert (await call("createOrder", **create("P4", "5", rec.url, type_="3")))["code"] == -1
    assert (await call("createOrder", **create("P1", "11", rec.url, param="ORDER1")))["code"] == -1
    other = await compat_shop(bridge)
    status, out = await bridge.call("GET", f"/vmq/{other.compat['pid']}/getOrder?orderId={oid}")
    assert status == 200 and out["code"] == -1
    status, out = await bridge.call("GET", "/vmq/12/getOrder?orderId=x")
    assert status == 200 and out["code"] == -1 and out["error"] == "unknown_pid"
    await device.close()


def test_base64_platform_key_is_spki() -> None:
    """The platform key handed out is bare base64 SPKI, the form the V2 SDK takes."""
    private, public_b64 = _rsa_pair()
    assert base64.b64decode(public_b64)[:2] == b"\x30\x82"
    assert epay.load_public_key(public_b64).public_numbers() == private.public_key().public_numbers()


class Crash(Exception):
    pass


async def _rows(bridge: RunningBridge) -> tuple[int, int]:
    def op(tx: Any) -> tuple[int, int]:
        d = tx.one("SELECT COUNT(*) FROM deliveries")
        c = tx.one("SELECT COUNT(*) FROM compat_notifies")
        return int(d[0]), int(c[0])

    return await bridge.ctx.db.read(op)


@pytest.mark.parametrize("checkpoint", ["ingest.order_paid", "compat.notify_queued"])
async def test_payment_and_shop_notify_commit_together(bridge: RunningBridge, checkpoint: str) -> None:
    """A failure between marking a compat order paid and queueing its notify leaves neither (no ack either);
    the resent report pays the order and queues exactly one notify."""
    shop = await compat_shop(bridge)
    device = await _phone(bridge, shop)
    params = {"pid": str(shop.compat["pid"]), "out_trade_no": "A1", "money": "4", "type": "alipay"}
    order_id = await _submit(bridge, _signed({**params, "notify_url": "http://127.0.0.1:9/n"}, shop.key))
    order = await _order(bridge, shop, order_id)
    before = await _rows(bridge)

    def fault(name: str) -> None:
        if name == checkpoint:
            raise Crash(name)

    bridge.ctx.db.fault = fault
    frame = device.report(amount_cents=order["pay_amount_cents"])
    await device.send(frame)
    with pytest.raises(TimeoutError):
        await device.recv_type("ack", timeout=0.5)
    assert await _rows(bridge) == before
    assert (await _order(bridge, shop, order_id))["status"] == "pending"
    bridge.ctx.db.fault = None
    await device.send(frame)
    assert (await device.recv_type("ack"))["status"] == "accepted"
    assert (await _order(bridge, shop, order_id))["status"] == "paid"
    after = await _rows(bridge)
    assert after[1] == before[1] + 1
    await device.close()
