"""Payments seen by devices: listing and manual resolution; receiving accounts and their devices."""

from __future__ import annotations

from bridge.core.models.account import LinkedAccount
from bridge.core.models.ids import AccountId, DeviceId
from bridge.core.models.order import OrderDetail
from bridge.core.models.page import Page
from bridge.core.models.payment import Payment, UnmatchedPayment
from bridge.core.states import OrderStatus, PaymentStatus, sources
from bridge.errors import Conflict, NotFound
from bridge.ids import new_id
from bridge.services.context import Context
from bridge.services.ingest import mark_paid
from bridge.services.orders import detail, implicit_slot
from bridge.services.views import payment_json
from bridge.store import devices as devices_store
from bridge.store import merchants as merchants_store
from bridge.store import orders as orders_store
from bridge.store import payments as store
from bridge.store.database import Tx

__all__ = [
    "SUGGEST_WITHIN_MS",
    "create_account",
    "get_payment",
    "ignore",
    "link_device",
    "list_accounts",
    "list_payments",
    "match_manually",
    "unmatched_queue",
]

SUGGEST_WITHIN_MS = 24 * 3600 * 1000  # orders that expired longer ago than this are not offered


async def list_payments(
    ctx: Context, merchant_id: str, *, status: str | None, before: str | None, limit: int
) -> Page[Payment]:
    def op(tx: Tx) -> Page[Payment]:
        found = store.list_payments(tx, merchant_id, status=status, before=before, limit=limit + 1)
        return Page(tuple(found[:limit]), has_more=len(found) > limit)

    return await ctx.db.read(op)


async def unmatched_queue(ctx: Context, merchant_id: str, *, limit: int = 50) -> list[UnmatchedPayment]:
    """Unmatched payments, newest first, each with the phone that saw it and the orders it may pay:
    pending or recently expired ones whose pay amount (first) or asked amount equals it."""

    def op(tx: Tx) -> list[UnmatchedPayment]:
        since = ctx.clock.now_ms() - SUGGEST_WITHIN_MS
        out = []
        for payment in store.list_payments(tx, merchant_id, status=PaymentStatus.UNMATCHED, before=None, limit=limit):
            device = devices_store.get_device(tx, payment.device_id)
            fits = []
            if payment.amount_cents is not None:
                fits = orders_store.fitting_orders(
                    tx, merchant_id, payment.amount_cents, payment.channel, since=since, limit=5
                )
            out.append(
                UnmatchedPayment(
                    payment,
                    None if device is None else device.name,
                    tuple(detail(tx, o) for o in fits),
                )
            )
        return out

    return await ctx.db.read(op)


async def get_payment(ctx: Context, merchant_id: str, payment_id: str) -> Payment:
    def op(tx: Tx) -> Payment:
        payment = store.get_payment(tx, merchant_id, payment_id)
        if payment is None:
            raise NotFound("no such payment")
        return payment

    return await ctx.db.read(op)


async def match_manually(ctx: Context, merchant_id: str, payment_id: str, order_id: str) -> tuple[Payment, OrderDetail]:
    """A human says this unmatched payment pays that order: order -> paid (manual), one transaction.
    The payment and the order as they are now."""

    def op(tx: Tx) -> tuple[Payment, OrderDetail]:
        now = ctx.clock.now_ms()
        payment = store.get_payment(tx, merchant_id, payment_id)
        if payment is None:
            raise NotFound("no such payment")
        order = orders_store.get_order(tx, merchant_id, order_id)
        if order is None:
            raise NotFound("no such order")
        if payment.status not in sources(PaymentStatus.MATCHED):
            raise Conflict(f"this payment is already {payment.status}", "payment_not_unmatched")
        if order.status not in sources(OrderStatus.PAID):
            raise Conflict(
                f"this order is {order.status}; only pending or expired orders can be paid", "order_not_payable"
            )
        paid = store.set_payment_status(
            tx, payment_id, status=PaymentStatus.MATCHED, reason="manual", order_id=order_id, manual=True
        )
        assert paid is not None  # unmatched a moment ago, in this transaction
        fresh = mark_paid(
            ctx,
            tx,
            merchant_id=merchant_id,
            order_id=order_id,
            payment_id=payment_id,
            now=now,
            late=False,
            manual=True,
            payment=payment_json(paid),
        )
        return paid, detail(tx, fresh)

    return await ctx.db.write(op)


async def ignore(ctx: Context, merchant_id: str, payment_id: str) -> Payment:
    def op(tx: Tx) -> Payment:
        payment = store.get_payment(tx, merchant_id, payment_id)
        if payment is None:
            raise NotFound("no such payment")
        ignored = store.set_payment_status(
            tx, payment_id, status=PaymentStatus.IGNORED, reason="ignored_by_merchant", manual=True
        )
        if ignored is None:
            raise Conflict(f"this payment is already {payment.status}", "payment_not_unmatched")
        return ignored

    return await ctx.db.write(op)


async def create_account(
    ctx: Context, merchant_id: str, *, channel: str, name: str, qr_payload: str | None, device_ids: list[str]
) -> LinkedAccount:
    account_id = AccountId(new_id("acc"))

    def op(tx: Tx) -> LinkedAccount:
        for device_id in device_ids:
            d = devices_store.get_device(tx, device_id)
            if d is None or d.merchant_id != merchant_id:
                raise NotFound(f"no such device: {device_id}")
        merchants_store.insert_account(
            tx,
            id=account_id,
            merchant_id=merchant_id,
            channel=channel,
            name=name,
            qr_payload=qr_payload,
            now=ctx.clock.now_ms(),
        )
        # Orders placed while the channel had no account hold the merchant-wide slot, which every
        # phone sees; they now hold their amounts on this account too, so no new order reuses one.
        orders_store.share_slot(tx, held=implicit_slot(merchant_id, channel), also=account_id)
        for device_id in device_ids:
            devices_store.link_account(tx, device_id, account_id)
        account = merchants_store.get_account(tx, merchant_id, account_id)
        assert account is not None
        return LinkedAccount(account, tuple(DeviceId(d) for d in device_ids))

    return await ctx.db.write(op)


async def list_accounts(ctx: Context, merchant_id: str) -> list[LinkedAccount]:
    def op(tx: Tx) -> list[LinkedAccount]:
        return [
            LinkedAccount(a, tuple(merchants_store.account_device_ids(tx, a.id)))
            for a in merchants_store.accounts_for_merchant(tx, merchant_id)
        ]

    return await ctx.db.read(op)


async def link_device(ctx: Context, merchant_id: str, account_id: str, device_id: str) -> None:
    """Link a phone to a receiving account (both the merchant's; NotFound otherwise)."""

    def op(tx: Tx) -> None:
        if merchants_store.get_account(tx, merchant_id, account_id) is None:
            raise NotFound("no such account")
        d = devices_store.get_device(tx, device_id)
        if d is None or d.merchant_id != merchant_id:
            raise NotFound("no such device")
        devices_store.link_account(tx, device_id, account_id)

    await ctx.db.write(op)
