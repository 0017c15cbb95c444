"""Redundant phones: two phones on one receiving account report one payment once, and two payments twice."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from tests.harness import RunningBridge, TestDevice, make_settings, running_bridge

# The real shape (shared corpus: Alipay 10.x, amount in the title, promo with a decoy number in the
# text). Each phone gets its own notification: its own key and its own `when`, the same text.
TITLE = "你已成功收款5.00元"
TEXT = "已转入余额 100积分兑收钱音箱，去兑换>>"


async def _phones(bridge: RunningBridge, key: str, link: bool) -> tuple[TestDevice, TestDevice]:
    a = await bridge.pair(key, "phone A")
    b = await bridge.pair(key, "phone B")
    if link:
        status, _ = await bridge.call(
            "POST",
            "/v1/accounts",
            token=key,
            json_body={"channel": "alipay", "name": "shop code", "device_ids": [a.device_id, b.device_id]},
        )
        assert status == 201
    await a.connect()
    await b.connect()
    return a, b


async def _own_notification(phone: TestDevice, amount: int, observed_at: int) -> dict[str, object]:
    """The phone's own copy of the notification: its own key and `when`, the shared text."""
    return await phone.pay(
        amount,
        title=TITLE,
        text=TEXT,
        key=f"0|com.eg.android.AlipayGphone|{phone.device_id}|{observed_at}",
        when=observed_at,
        observed_at=observed_at,
    )


async def test_two_phones_one_payment(bridge: RunningBridge) -> None:
    """Both linked phones' notifications of one payment, seconds apart, are one payment paying the order
    once; the second phone's report is acked duplicate with the first one's payment id."""
    m = await bridge.merchant()
    key = m["api_key"]
    a, b = await _phones(bridge, key, link=True)
    order = await bridge.order(key, "5.00")
    now = int(time.time() * 1000)
    first = await _own_notification(a, 500, now)
    second = await _own_notification(b, 500, now + 3_000)
    assert first["status"] == "accepted"
    assert second["status"] == "duplicate" and second["payment_id"] == first["payment_id"]
    _, page = await bridge.call("GET", "/v1/payments", token=key)
    assert [p["id"] for p in page["data"]] == [first["payment_id"]]
    _, paid = await bridge.call("GET", f"/v1/orders/{order['id']}", token=key)
    assert paid["status"] == "paid" and paid["payment_id"] == first["payment_id"]
    # B's agent re-reading its own notification later is still that same payment.
    again = await _own_notification(b, 500, now + 3_000)
    assert again["status"] == "duplicate" and again["payment_id"] == first["payment_id"]
    await a.close()
    await b.close()


async def test_two_payments_seen_by_both_phones_stay_two(bridge: RunningBridge) -> None:
    """Two genuine payments of one amount, each seen by both phones, interleaved: two payments, each
    phone's reports paired with the other's in order."""
    m = await bridge.merchant()
    key = m["api_key"]
    a, b = await _phones(bridge, key, link=True)
    now = int(time.time() * 1000)
    a1 = await _own_notification(a, 500, now)
    b1 = await _own_notification(b, 500, now + 2_000)
    b2 = await _own_notification(b, 500, now + 20_000)  # B sees the second payment first
    a2 = await _own_notification(a, 500, now + 21_000)
    assert [x["status"] for x in (a1, b1, b2, a2)] == ["accepted", "duplicate", "accepted", "duplicate"]
    assert b1["payment_id"] == a1["payment_id"] and a2["payment_id"] == b2["payment_id"]
    assert a1["payment_id"] != b2["payment_id"]
    _, page = await bridge.call("GET", "/v1/payments", token=key)
    assert len(page["data"]) == 2
    await a.close()
    await b.close()


async def test_one_phone_twice_is_two_payments(bridge: RunningBridge) -> None:
    """Two notifications of the same amount from one phone are never merged."""
    m = await bridge.merchant()
    key = m["api_key"]
    a, b = await _phones(bridge, key, link=True)
    now = int(time.time() * 1000)
    x = await _own_notification(a, 500, now)
    y = await _own_notification(a, 500, now + 1_000)
    assert (x["status"], y["status"]) == ("accepted", "accepted") and x["payment_id"] != y["payment_id"]
    await a.close()
    await b.close()


async def test_unlinked_phones_are_not_merged(bridge: RunningBridge) -> None:
    """Phones linked to no account may watch two accounts: their same-amount reports are two payments,
    each paying an order of its own (the second order took the amount the first one freed)."""
    m = await bridge.merchant()
    key = m["api_key"]
    a, b = await _phones(bridge, key, link=False)
    now = int(time.time() * 1000)
    first = await bridge.order(key, "5.00")
    x = await _own_notification(a, 500, now)
    second = await bridge.order(key, "5.00")
    assert second["pay_amount"] == "5.00"
    y = await _own_notification(b, 500, now + 1_000)
    assert (x["status"], y["status"]) == ("accepted", "accepted")
    for order in (first, second):
        _, fresh = await bridge.call("GET", f"/v1/orders/{order['id']}", token=key)
        assert fresh["status"] == "paid"
    await a.close()
    await b.close()


async def test_phones_on_different_accounts_are_not_merged(bridge: RunningBridge) -> None:
    """Phones linked to different accounts report different money, even of one amount at one time;
    other amounts and other channels are never merged either."""
    m = await bridge.merchant()
    key = m["api_key"]
    a = await bridge.pair(key, "phone A")
    b = await bridge.pair(key, "phone B")
    for name, phone in (("A", a), ("B", b)):
        status, _ = await bridge.call(
            "POST",
            "/v1/accounts",
            token=key,
            json_body={"channel": "alipay", "name": name, "device_ids": [phone.device_id]},
        )
        assert status == 201
    await a.connect()
    await b.connect()
    now = int(time.time() * 1000)
    x = await _own_notification(a, 500, now)
    y = await _own_notification(b, 500, now + 1_000)
    assert (x["status"], y["status"]) == ("accepted", "accepted")
    await a.close()
    await b.close()


async def test_merging_can_be_turned_off(tmp_path: Path) -> None:
    """redundant_window = 0 keeps every phone's report a payment of its own."""
    settings = replace(make_settings(tmp_path), redundant_window=0)
    async with running_bridge(settings) as bridge:
        m = await bridge.merchant()
        a, b = await _phones(bridge, m["api_key"], link=True)
        now = int(time.time() * 1000)
        x = await _own_notification(a, 500, now)
        y = await _own_notification(b, 500, now + 1_000)
        assert (x["status"], y["status"]) == ("accepted", "accepted")
        await a.close()
        await b.close()
