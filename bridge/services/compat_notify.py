"""Compat notifies and return URLs: what a shop (易支付 / V免签) hears when its order is paid.

A paid compat order gets one durable delivery (a `deliveries` row plus a `compat_notifies` row)
in the payment's own transaction. Its fields are stored unsigned; the delivery worker signs them
at every attempt (`notify_url_for`), so a V2 notify always carries a fresh `timestamp` and
signature, and a rotated key signs the retries. The shop acknowledges with `success` (易支付: in
the body; V免签: the whole body); after that the order is never notified again.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.core import codec, epay, vmq
from bridge.core.models.compat import CompatOrder
from bridge.core.models.delivery import CompatNotify
from bridge.core.models.order import Order
from bridge.core.states import OrderStatus
from bridge.ids import new_id
from bridge.services.context import Context
from bridge.store import compat as store
from bridge.store import orders as orders_store
from bridge.store import payments as payments_store
from bridge.store.database import Tx

__all__ = ["PROTOCOLS", "compat_return_url", "enqueue_on_paid", "is_ack", "notify_url_for", "signed_query"]

PROTOCOLS = ("epay1", "epay2", "vmq")


def _paid_type(compat: CompatOrder, order: Order, paid_channel: str | None) -> str:
    """The type to report: what the shop asked for, else the method that actually paid."""
    channel = order.channel if order.channel != "any" else (paid_channel or "alipay")
    if compat.protocol == "vmq":
        return str(compat.type or vmq.CHANNEL_TYPES.get(channel, "2"))
    return str(compat.type or epay.CHANNEL_TYPES.get(channel, "alipay"))


def _fields(pid: int, compat: CompatOrder, order: Order, paid_channel: str | None) -> dict[str, str]:
    """The unsigned notify fields of a paid order (also the return URL's)."""
    pay_type = _paid_type(compat, order, paid_channel)
    if compat.protocol == "vmq":
        return {
            "payId": compat.out_trade_no,
            "param": compat.param,
            "type": pay_type,
            "price": compat.money_str,
            "reallyPrice": vmq.php_money(order.pay_amount_cents),
        }
    return epay.notify_params(
        pid=pid,
        trade_no=order.id,
        out_trade_no=compat.out_trade_no,
        pay_type=pay_type,
        name=compat.name,
        money=compat.money_str,
        param=compat.param,
    )


def signed_query(
    protocol: str, fields: Mapping[str, str], *, key: str, private_key: str, now_ms: int
) -> dict[str, str]:
    """The query a shop verifies: MD5 (epay1), RSA with a fresh timestamp (epay2) or the V免签 sign."""
    if protocol == "vmq":
        return vmq.notify_params(
            pay_id=fields["payId"],
            param=fields.get("param", ""),
            pay_type=fields["type"],
            price=fields["price"],
            really_price=fields["reallyPrice"],
            key=key,
        )
    if protocol == "epay2":
        stamped = {**fields, "timestamp": str(now_ms // 1000)}
        return {**stamped, "sign": epay.rsa_sign(stamped, epay.load_private_key(private_key)), "sign_type": "RSA"}
    return {**fields, "sign": epay.md5_sign(fields, key), "sign_type": "MD5"}


def enqueue_on_paid(ctx: Context, tx: Tx, order: Order, *, event_id: str, paid_channel: str | None, now: int) -> None:
    """In the payment's transaction: queue the compat notify of `order` if the shop gave a notify URL."""
    compat = store.get_compat_order(tx, order.id)
    if compat is None or not compat.notify_url:
        return
    shop = store.get_merchant(tx, order.merchant_id)
    assert shop is not None  # a compat order exists only for a compat merchant
    fields = _fields(shop.pid, compat, order, paid_channel)
    store.insert_notify(
        tx,
        delivery_id=new_id("dlv"),
        event_id=event_id,
        merchant_id=order.merchant_id,
        url=compat.notify_url,
        order_id=order.id,
        protocol=compat.protocol,
        fields=codec.dumps(fields),
        now=now,
    )
    tx.checkpoint("compat.notify_queued")
    tx.after_commit.append(ctx.bus.deliveries.set)  # the worker's next load finds it


def notify_url_for(url: str, notify: CompatNotify, now_ms: int) -> str:
    """The URL to GET for a compat notify to `url` (a delivery the worker claimed), signed now."""
    fields = {str(k): str(v) for k, v in codec.loads(notify.fields).items()}
    query = signed_query(notify.protocol, fields, key=notify.key, private_key=notify.private_key, now_ms=now_ms)
    return epay.with_query(url, query)


def is_ack(protocol: str, body: bytes) -> bool:
    return vmq.is_ack(body) if protocol == "vmq" else epay.is_ack(body)


async def compat_return_url(ctx: Context, order_id: str) -> str | None:
    """Where the payer goes after paying a compat order: the shop's return URL with the notify's signed
    query (a fresh timestamp and sign for V2); None when the order is not a paid compat order with one."""

    def op(tx: Tx) -> tuple[str, dict[str, str], str, str, str] | None:
        compat = store.get_compat_order(tx, order_id)
        if compat is None or not compat.return_url:
            return None
        order = orders_store.get_order(tx, compat.merchant_id, order_id)
        shop = store.get_merchant(tx, compat.merchant_id)
        if order is None or shop is None or order.status is not OrderStatus.PAID:
            return None
        fields = _fields(shop.pid, compat, order, _paid_channel(tx, order))
        return (compat.return_url, fields, compat.protocol, shop.key, shop.platform_private_key)

    found = await ctx.db.read(op)
    if found is None:
        return None
    url, fields, protocol, key, private_key = found
    return epay.with_query(
        url, signed_query(protocol, fields, key=key, private_key=private_key, now_ms=ctx.clock.now_ms())
    )


def _paid_channel(tx: Tx, order: Order) -> str | None:
    """The channel of the payment that paid `order` (None for a manual match without one)."""
    if order.payment_id is None:
        return None
    payment = payments_store.get_payment(tx, order.merchant_id, order.payment_id)
    return None if payment is None else payment.channel
