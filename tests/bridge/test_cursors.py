"""Pagination cursors are scoped to the merchant: another merchant's id answers exactly like a made-up one."""

from __future__ import annotations

from tests.harness import RunningBridge


async def test_order_cursor_of_another_merchant_is_unknown(bridge: RunningBridge) -> None:
    """`starting_after=<another merchant's order id>` gives the same answer as a made-up id."""
    a, b = await bridge.merchant("a"), await bridge.merchant("b")
    for i in range(3):
        await bridge.order(b["api_key"], "1.00", merchant_order_id=f"b{i}")
    theirs = await bridge.order(a["api_key"], "1.00")
    made_up = "ord_" + "0" * 32
    _, foreign = await bridge.call("GET", f"/v1/orders?starting_after={theirs['id']}", token=b["api_key"])
    _, unknown = await bridge.call("GET", f"/v1/orders?starting_after={made_up}", token=b["api_key"])
    assert foreign == unknown == {"data": [], "has_more": False}
    # A cursor of one's own still pages.
    _, first = await bridge.call("GET", "/v1/orders?limit=1", token=b["api_key"])
    _, rest = await bridge.call("GET", f"/v1/orders?starting_after={first['data'][0]['id']}", token=b["api_key"])
    assert [o["merchant_order_id"] for o in rest["data"]] == ["b1", "b0"]


async def test_payment_and_delivery_cursors_of_another_merchant_are_unknown(bridge: RunningBridge) -> None:
    """The payments list (and the delivery log) scope `starting_after` to the merchant too."""
    a, b = await bridge.merchant("a"), await bridge.merchant("b")
    phone_b = await bridge.pair(b["api_key"])
    await phone_b.connect()
    for cents in (101, 102):
        await phone_b.pay(cents)
    phone_a = await bridge.pair(a["api_key"])
    await phone_a.connect()
    await phone_a.pay(103)
    _, a_payments = await bridge.call("GET", "/v1/payments", token=a["api_key"])
    theirs = a_payments["data"][0]["id"]
    for path in ("/v1/payments", "/v1/deliveries"):
        _, foreign = await bridge.call("GET", f"{path}?starting_after={theirs}", token=b["api_key"])
        _, unknown = await bridge.call("GET", f"{path}?starting_after=pay_nope", token=b["api_key"])
        assert foreign == unknown == {"data": [], "has_more": False}, path
    _, own = await bridge.call("GET", "/v1/payments", token=b["api_key"])
    assert len(own["data"]) == 2
    await phone_a.close()
    await phone_b.close()
