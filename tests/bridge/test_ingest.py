"""Reports through the real websocket: auth, ack after commit, dedupe, matching."""

from __future__ import annotations

import time
import uuid

from tests.harness import RunningBridge


async def test_report_pays_the_matching_order(bridge: RunningBridge) -> None:
    """A paired device's report of the pay amount marks the pending order paid and acks `accepted`."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    order = await bridge.order(m["api_key"], "5.00")
    ack = await device.pay(order["pay_amount_cents"])
    assert ack["status"] == "accepted" and ack["payment_id"].startswith("pay_")
    status, fresh = await bridge.call("GET", f"/v1/orders/{order['id']}", token=m["api_key"])
    assert status == 200 and fresh["status"] == "paid" and fresh["payment_id"] == ack["payment_id"]
    await device.close()


async def test_same_event_twice_is_a_duplicate(bridge: RunningBridge) -> None:
    """Redelivering the same event id gives `duplicate` and no second payment."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    frame = device.report(amount_cents=123)
    await device.send(frame)
    first = await device.recv_type("ack")
    await device.send(frame)
    second = await device.recv_type("ack")
    assert (first["status"], second["status"]) == ("accepted", "duplicate")
    assert second["payment_id"] == first["payment_id"]
    _status, page = await bridge.call("GET", "/v1/payments", token=m["api_key"])
    assert len(page["data"]) == 1
    await device.close()


async def test_same_notification_reread_is_a_duplicate(bridge: RunningBridge) -> None:
    """The same notification (package, key, when, title, text) under a new event id is a duplicate."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    when = int(time.time() * 1000)
    a = await device.pay(500, key="k1", when=when, title="你已成功收款5.00元")
    b = await device.pay(500, key="k1", when=when, title="你已成功收款5.00元")
    assert (a["status"], b["status"]) == ("accepted", "duplicate")
    await device.close()


async def test_two_genuine_payments_of_the_same_amount_are_two(bridge: RunningBridge) -> None:
    """Two different notifications of the same amount seconds apart make two payments, paying two orders."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    o1 = await bridge.order(m["api_key"], "5.00")
    a = await device.pay(o1["pay_amount_cents"], key="k1")
    o2 = await bridge.order(m["api_key"], "5.00")
    assert o2["pay_amount_cents"] == o1["pay_amount_cents"]  # o1 was paid, so 5.00 is free again
    b = await device.pay(o2["pay_amount_cents"], key="k2")
    assert a["status"] == b["status"] == "accepted" and a["payment_id"] != b["payment_id"]
    for o in (o1, o2):
        _, fresh = await bridge.call("GET", f"/v1/orders/{o['id']}", token=m["api_key"])
        assert fresh["status"] == "paid"
    await device.close()


async def test_unmatched_and_no_amount_payments(bridge: RunningBridge) -> None:
    """A payment no order fits is `unmatched` (no_order); one without an amount is unmatched (no_amount)."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    await device.pay(777)
    await device.pay(None, title="收款到账通知")
    status, page = await bridge.call("GET", "/v1/payments?status=unmatched", token=m["api_key"])
    assert status == 200
    assert sorted(p["reason"] for p in page["data"]) == ["no_amount", "no_order"]
    await device.close()


async def test_report_with_bad_field_is_rejected_not_closed(bridge: RunningBridge) -> None:
    """A report with a mistyped amount is acked `rejected` with a reason and the connection stays usable."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    frame = device.report(amount_cents=100)
    frame["parsed"]["amount_cents"] = "1.00"
    await device.send(frame)
    ack = await device.recv_type("ack")
    assert ack["status"] == "rejected" and "amount_cents" in ack["reason"]
    assert (await device.pay(200))["status"] == "accepted"
    await device.close()


async def test_manual_match_and_ignore(bridge: RunningBridge) -> None:
    """An unmatched payment can be matched to an order by hand (flagged manual) or ignored."""
    m = await bridge.merchant()
    key = m["api_key"]
    device = await bridge.pair(key)
    await device.connect()
    order = await bridge.order(key, "8.00")
    a = await device.pay(1)  # wrong amount: unmatched
    b = await device.pay(2)
    status, out = await bridge.call(
        "POST", f"/v1/payments/{a['payment_id']}/match", token=key, json_body={"order_id": order["id"]}
    )
    assert status == 200 and out["order"]["status"] == "paid" and out["order"]["manual"] is True
    status, out = await bridge.call(
        "POST", f"/v1/payments/{a['payment_id']}/match", token=key, json_body={"order_id": order["id"]}
    )
    assert status == 409
    status, out = await bridge.call("POST", f"/v1/payments/{b['payment_id']}/ignore", token=key)
    assert status == 200 and out["status"] == "ignored"
    await device.close()


async def test_events_of_a_match_in_order(bridge: RunningBridge) -> None:
    """A matching report raises payment.received then order.paid, whose data holds the paid order and the
    matched payment."""
    import json

    from bridge.store.database import Tx

    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    order = await bridge.order(m["api_key"], "4.20")
    ack = await device.pay(order["pay_amount_cents"])

    def bodies(tx: Tx) -> list[dict[str, object]]:
        return [
            json.loads(r[0])
            for r in tx.all("SELECT body FROM events WHERE type LIKE 'order.%' OR type LIKE 'payment.%' ORDER BY seq")
        ]

    events = await bridge.ctx.db.read(bodies)
    assert [e["type"] for e in events] == ["payment.received", "order.paid"]
    paid = events[1]["data"]
    assert paid["order"]["status"] == "paid" and paid["order"]["id"] == order["id"]  # type: ignore[index]
    assert paid["payment"]["id"] == ack["payment_id"] and paid["payment"]["status"] == "matched"  # type: ignore[index]
    assert paid["payment"]["order_id"] == order["id"]  # type: ignore[index]
    await device.close()


async def test_a_device_pays_only_orders_of_the_channels_it_was_paired_for(bridge: RunningBridge) -> None:
    """A phone paired for Alipay reporting a WeChat payment records it unmatched (channel_not_paired);
    its Alipay reports still pay, and a phone paired without channels may report any."""
    m = await bridge.merchant()
    key = m["api_key"]
    alipay_phone = await bridge.pair(key, "alipay phone", channels=["alipay"])
    await alipay_phone.connect()
    wechat_order = await bridge.order(key, "8.00", channel="wechat")
    ack = await alipay_phone.pay(800, channel="wechat", package="com.tencent.mm", title="微信支付")
    assert ack["status"] == "accepted"
    _, payment = await bridge.call("GET", f"/v1/payments/{ack['payment_id']}", token=key)
    assert (payment["status"], payment["reason"]) == ("unmatched", "channel_not_paired")
    _, still = await bridge.call("GET", f"/v1/orders/{wechat_order['id']}", token=key)
    assert still["status"] == "pending"
    alipay_order = await bridge.order(key, "8.00", channel="alipay")
    ack = await alipay_phone.pay(alipay_order["pay_amount_cents"])
    _, paid = await bridge.call("GET", f"/v1/orders/{alipay_order['id']}", token=key)
    assert paid["status"] == "paid"
    any_phone = await bridge.pair(key, "any phone")
    await any_phone.connect()
    other_wechat_order = await bridge.order(key, "9.00", channel="wechat")
    await any_phone.pay(900, channel="wechat", package="com.tencent.mm", title="微信支付")
    _, paid = await bridge.call("GET", f"/v1/orders/{other_wechat_order['id']}", token=key)
    assert paid["status"] == "paid"
    await alipay_phone.close()
    await any_phone.close()


async def test_event_ids_differing_only_in_spelling_are_one_report(bridge: RunningBridge) -> None:
    """The same UUID in upper case, braces or without hyphens is the same report: one payment, and
    each ack names the event id as the device spelled it."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    u = uuid.uuid4()
    spellings = [str(u), str(u).upper(), "{" + str(u) + "}", u.hex, f"urn:uuid:{u}"]
    acks = []
    for spelling in spellings:
        frame = device.report(amount_cents=321, event_id=spelling, key=f"k-{spelling}")
        await device.send(frame)
        acks.append(await device.recv_type("ack"))
    assert [a["event_id"] for a in acks] == spellings
    assert [a["status"] for a in acks] == ["accepted"] + ["duplicate"] * 4
    assert len({a["payment_id"] for a in acks}) == 1
    _status, page = await bridge.call("GET", "/v1/payments", token=m["api_key"])
    assert len(page["data"]) == 1
    await device.close()
