"""The merchant order API: validation, idempotent creation, unique pay amounts, accounts, expiry."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path

import pytest

from tests import pg
from tests.harness import RunningBridge, make_settings, running_bridge


async def test_order_shape_and_warning(bridge: RunningBridge) -> None:
    """A created order carries the contract fields, yuan strings with two decimals, and no_online_device."""
    m = await bridge.merchant()
    status, order = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body={
        "merchant_order_id": "A1", "amount": "10", "channel": "wechat", "metadata": {"sku": "tea"}})
    assert status == 201
    for key in ("id", "merchant_order_id", "status", "channel", "amount", "amount_cents", "pay_amount",
                "pay_amount_cents", "created_at", "expires_at", "paid_at", "payment_id", "metadata"):
        assert key in order
    assert (order["amount"], order["amount_cents"], order["pay_amount"]) == ("10.00", 1000, "10.00")
    assert order["status"] == "pending" and order["metadata"] == {"sku": "tea"}
    assert order["created_at"].endswith("Z") and order["warnings"] == ["no_online_device"]


async def test_amount_cents_is_accepted(bridge: RunningBridge) -> None:
    """`amount_cents` is an alternative to `amount`."""
    m = await bridge.merchant()
    status, order = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body={
        "merchant_order_id": "A2", "amount_cents": 1234, "channel": "alipay"})
    assert status == 201 and order["amount"] == "12.34"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"merchant_order_id": "x", "amount": "1.001", "channel": "alipay"}, "invalid_amount"),
        ({"merchant_order_id": "x", "amount": "-1.00", "channel": "alipay"}, "invalid_amount"),
        ({"merchant_order_id": "x", "amount": "0.00", "channel": "alipay"}, "invalid_amount"),
        ({"merchant_order_id": "x", "amount": 10.0, "channel": "alipay"}, "invalid_amount"),
        ({"merchant_order_id": "x", "amount": "99999999999999.00", "channel": "alipay"}, "invalid_amount"),
        ({"merchant_order_id": "x", "amount_cents": True, "channel": "alipay"}, "invalid_amount"),
        ({"merchant_order_id": "x", "amount": "1.00", "channel": "paypal"}, "invalid_field"),
        ({"merchant_order_id": "x", "amount": "1.00", "channel": "alipay", "expires_in": 5}, "invalid_field"),
        ({"merchant_order_id": "x", "amount": "1.00", "channel": "alipay", "color": "red"}, "unknown_field"),
        ({"merchant_order_id": "x", "amount": "1.00", "channel": "alipay", "notify_url": "ftp://x"}, "invalid_url"),
        ({"amount": "1.00", "channel": "alipay"}, "missing_field"),
        ({"merchant_order_id": "x", "amount": "1.00", "amount_cents": 100, "channel": "alipay"}, "invalid_field"),
    ],
)
async def test_invalid_orders_are_rejected(bridge: RunningBridge, body: dict[str, object], code: str) -> None:
    """Each invalid field gives 400 with a stable error code and a message."""
    m = await bridge.merchant()
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    assert status == 400 and out["error"]["code"] == code and out["error"]["message"]


async def test_bad_json_and_big_body(bridge: RunningBridge) -> None:
    """Invalid JSON is 400 invalid_json; a body over 64 KiB is 413."""
    m = await bridge.merchant()
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], data=b"{oops",
                                    headers={"Content-Type": "application/json"})
    assert status == 400 and out["error"]["code"] == "invalid_json"
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], data=b"x" * (65 * 1024))
    assert status == 413 and out["error"]["code"] == "payload_too_large"


async def test_idempotent_create(bridge: RunningBridge) -> None:
    """The same merchant_order_id with the same parameters returns the same order (200); different → 409."""
    m = await bridge.merchant()
    body = {"merchant_order_id": "same", "amount": "3.00", "channel": "alipay"}
    s1, o1 = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    s2, o2 = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    s3, o3 = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body={**body, "amount": "4.00"})
    assert (s1, s2, s3) == (201, 200, 409)
    assert o1["id"] == o2["id"] and o3["error"]["code"] == "merchant_order_id_conflict"


async def test_concurrent_creates_of_one_merchant_order_id_make_one_order(tmp_path: Path) -> None:
    """Ten simultaneous creates of one merchant_order_id give one 201 and nine 200s with that same order,
    never a 500; on PostgreSQL they go to two bridges sharing the database, so two writers really race."""
    a_settings = make_settings(tmp_path / "a", secrets_key_file=str(tmp_path / "secrets.key"))
    b_settings = make_settings(
        tmp_path / "b", database_url=a_settings.database_url, secrets_key_file=str(tmp_path / "secrets.key")
    )
    async with running_bridge(a_settings) as a, contextlib.AsyncExitStack() as stack:
        bridges = [a]
        if pg.e2e_on_postgres():  # SQLite has one writer per file: a second bridge would only queue behind it
            bridges.append(await stack.enter_async_context(running_bridge(b_settings)))
        m = await a.merchant()
        for round_ in range(5):  # a few rounds: a race that loses once in a while still shows
            body = {"merchant_order_id": f"race-{round_}", "amount": "7.00", "channel": "alipay"}
            results = await asyncio.gather(
                *(
                    bridges[i % len(bridges)].call("POST", "/v1/orders", token=m["api_key"], json_body=body)
                    for i in range(10)
                )
            )
            statuses = sorted(status for status, _ in results)
            assert statuses == [200] * 9 + [201], results
            assert len({out["id"] for _, out in results}) == 1


async def test_pay_amounts_step_down_and_exhaust(bridge: RunningBridge) -> None:
    """Pending orders of one amount get 10.00, 9.99 … 9.90; the twelfth is 409 amount_exhausted."""
    m = await bridge.merchant()
    amounts = []
    for _ in range(11):
        amounts.append((await bridge.order(m["api_key"], "10.00"))["pay_amount"])
    assert amounts == ["10.00", "9.99", "9.98", "9.97", "9.96", "9.95", "9.94", "9.93", "9.92", "9.91", "9.90"]
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body={
        "merchant_order_id": "extra", "amount": "10.00", "channel": "alipay"})
    assert status == 409 and out["error"]["code"] == "amount_exhausted"


async def test_channels_and_any(bridge: RunningBridge) -> None:
    """Different channels may share a pay amount; an `any` order collides with every channel."""
    m = await bridge.merchant()
    a = await bridge.order(m["api_key"], "5.00", "alipay")
    w = await bridge.order(m["api_key"], "5.00", "wechat")
    any_ = await bridge.order(m["api_key"], "5.00", "any")
    assert (a["pay_amount"], w["pay_amount"], any_["pay_amount"]) == ("5.00", "5.00", "4.99")


async def test_never_below_one_fen(bridge: RunningBridge) -> None:
    """A 0.01 order cannot step below 0.01: the second pending one is refused."""
    m = await bridge.merchant()
    assert (await bridge.order(m["api_key"], "0.01"))["pay_amount"] == "0.01"
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body={
        "merchant_order_id": "tiny2", "amount": "0.01", "channel": "alipay"})
    assert status == 409 and out["error"]["code"] == "amount_exhausted"


async def test_concurrent_creates_never_share_a_pay_amount(bridge: RunningBridge) -> None:
    """100 simultaneous creates of one amount give distinct pay amounts or 409s, never two equal pending ones."""
    m = await bridge.merchant()

    async def one(i: int) -> tuple[int, object]:
        return await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body={
            "merchant_order_id": f"c{i}", "amount": "20.00", "channel": "alipay"})

    results = await asyncio.gather(*(one(i) for i in range(100)))
    created = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status == 409]
    assert len(created) + len(refused) == 100
    pay = [o["pay_amount_cents"] for o in created]  # type: ignore[index]
    assert len(pay) == len(set(pay)) == 11

    def db_check(tx: object) -> list[object]:
        return tx.all(  # type: ignore[attr-defined,no-any-return]
            "SELECT pay_amount_cents, COUNT(*) FROM orders WHERE status = 'pending' GROUP BY pay_amount_cents"
            " HAVING COUNT(*) > 1")

    assert await bridge.ctx.db.read(db_check) == []  # type: ignore[arg-type]


async def test_list_filter_and_close(bridge: RunningBridge) -> None:
    """Orders list by merchant_order_id and status with pagination; closing works once, on pending only."""
    m = await bridge.merchant()
    key = m["api_key"]
    orders = [await bridge.order(key, "1.00", merchant_order_id=f"L{i}") for i in range(3)]
    status, page = await bridge.call("GET", "/v1/orders?status=pending&limit=2", token=key)
    assert status == 200 and len(page["data"]) == 2 and page["has_more"] is True
    last = page["data"][-1]["id"]
    status, rest = await bridge.call("GET", f"/v1/orders?status=pending&limit=2&starting_after={last}", token=key)
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    status, one = await bridge.call("GET", "/v1/orders?merchant_order_id=L1", token=key)
    assert [o["id"] for o in one["data"]] == [orders[1]["id"]]
    status, closed = await bridge.call("POST", f"/v1/orders/{orders[0]['id']}/close", token=key)
    assert status == 200 and closed["status"] == "closed"
    status, again = await bridge.call("POST", f"/v1/orders/{orders[0]['id']}/close", token=key)
    assert status == 409 and again["error"]["code"] == "order_not_pending"
    # closing released the pay amount
    assert (await bridge.order(key, "1.00"))["pay_amount"] == "1.00"


async def test_other_merchants_orders_are_invisible(bridge: RunningBridge) -> None:
    """Another merchant's key gets 404 for this merchant's order, and no key gets 401."""
    a = await bridge.merchant("a")
    b = await bridge.merchant("b")
    order = await bridge.order(a["api_key"], "2.00")
    status, out = await bridge.call("GET", f"/v1/orders/{order['id']}", token=b["api_key"])
    assert status == 404 and out["error"]["code"] == "not_found"
    status, out = await bridge.call("GET", f"/v1/orders/{order['id']}")
    assert status == 401
    status, out = await bridge.call("GET", f"/v1/orders/{order['id']}", token="pbk_wrong")
    assert status == 401


async def test_expiry_and_late_payment(tmp_path: Path) -> None:
    """An order expires on time (order.expired), and a payment within the grace period pays it late."""
    settings = replace(make_settings(tmp_path / "d"), order_ttl_min=1, expiry_interval=0.05)
    async with running_bridge(settings) as b:
        m = await b.merchant()
        device = await b.pair(m["api_key"])
        await device.connect()
        order = await b.order(m["api_key"], "6.00", expires_in=1)
        for _ in range(100):
            _, fresh = await b.call("GET", f"/v1/orders/{order['id']}", token=m["api_key"])
            if fresh["status"] == "expired":
                break
            await asyncio.sleep(0.05)
        assert fresh["status"] == "expired"
        ack = await device.pay(order["pay_amount_cents"])
        assert ack["status"] == "accepted"
        _, fresh = await b.call("GET", f"/v1/orders/{order['id']}", token=m["api_key"])
        assert fresh["status"] == "paid" and fresh["late"] is True
        await device.close()


@pytest.mark.parametrize("first_channel", ["alipay", "any"])
async def test_pay_amounts_stay_unique_when_an_account_is_added(bridge: RunningBridge, first_channel: str) -> None:
    """An order placed before any receiving account existed keeps its pay amount to itself after an
    account is added: the next order of that amount steps, and the payment pays the first order."""
    m = await bridge.merchant()
    key = m["api_key"]
    phone = await bridge.pair(key, "phone")
    first = await bridge.order(key, "10.00", channel=first_channel)
    assert first["pay_amount"] == "10.00" and first["account"] is None
    status, acc = await bridge.call("POST", "/v1/accounts", token=key, json_body={
        "channel": "alipay", "name": "A", "device_ids": [phone.device_id]})
    assert status == 201
    second = await bridge.order(key, "10.00", channel="alipay")
    assert second["account"]["id"] == acc["id"]
    assert second["pay_amount"] == "9.99"
    await phone.connect()
    ack = await phone.pay(1000)
    assert ack["status"] == "accepted"
    _, paid = await bridge.call("GET", f"/v1/orders/{first['id']}", token=key)
    assert paid["status"] == "paid"
    # Paying the first order frees 10.00 on the account for the next order.
    third = await bridge.order(key, "10.00", channel="alipay")
    assert third["pay_amount"] == "10.00"
    await phone.close()


async def test_payee_pool_accounts(bridge: RunningBridge) -> None:
    """With two Alipay accounts the same amount goes to the second account before stepping, and
    a device only matches orders of the accounts it is linked to."""
    m = await bridge.merchant()
    key = m["api_key"]
    d1 = await bridge.pair(key, "phone1")
    d2 = await bridge.pair(key, "phone2")
    s1, acc1 = await bridge.call("POST", "/v1/accounts", token=key, json_body={
        "channel": "alipay", "name": "A", "qr_payload": "https://qr.alipay.com/a", "device_ids": [d1.device_id]})
    s2, acc2 = await bridge.call("POST", "/v1/accounts", token=key, json_body={
        "channel": "alipay", "name": "B", "device_ids": [d2.device_id]})
    assert (s1, s2) == (201, 201)
    o1 = await bridge.order(key, "7.00")
    o2 = await bridge.order(key, "7.00")
    o3 = await bridge.order(key, "7.00")
    assert (o1["pay_amount"], o2["pay_amount"], o3["pay_amount"]) == ("7.00", "7.00", "6.99")
    assert {o1["account"]["id"], o2["account"]["id"]} == {acc1["id"], acc2["id"]}
    assert o1["account"]["channel"] == "alipay"
    target = o1 if o1["account"]["id"] == acc2["id"] else o2  # the order on phone2's account
    await d2.connect()
    ack = await d2.pay(700)
    assert ack["status"] == "accepted"
    _, paid = await bridge.call("GET", f"/v1/orders/{target['id']}", token=key)
    assert paid["status"] == "paid"
    other = o2 if target is o1 else o1
    _, still = await bridge.call("GET", f"/v1/orders/{other['id']}", token=key)
    assert still["status"] == "pending"
    await d2.close()
