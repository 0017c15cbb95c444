"""Payments seen by devices: listing and manual resolution; receiving accounts and their devices."""

from __future__ import annotations

from typing import Any

from bridge.core.states import PaymentStatus, transition
from bridge.errors import Conflict, NotFound
from bridge.ids import new_id
from bridge.services.context import Context
from bridge.services.ingest import mark_paid
from bridge.services.orders import implicit_slot, render
from bridge.services.views import account_json, payment_json
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
) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        rows = store.list_payments(tx, merchant_id, status=status, before=before, limit=limit + 1)
        return {"data": [payment_json(r) for r in rows[:limit]], "has_more": len(rows) > limit}

    return await ctx.db.read(op)


async def unmatched_queue(ctx: Context, merchant_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Unmatched payments, newest first, each with the phone that saw it and the orders it may pay:
    pending or recently expired ones whose pay amount (first) or asked amount equals it."""

    def op(tx: Tx) -> list[dict[str, Any]]:
        since = ctx.clock.now_ms() - SUGGEST_WITHIN_MS
        out = []
        for row in store.list_payments(tx, merchant_id, status=PaymentStatus.UNMATCHED, before=None, limit=limit):
            p = payment_json(row)
            device = devices_store.get_device(tx, row["device_id"])
            p["device_name"] = None if device is None else device.name
            fits = []
            if row["amount_cents"] is not None:
                fits = orders_store.fitting_orders(
                    tx, merchant_id, row["amount_cents"], row["channel"], since=since, limit=5
                )
            p["suggestions"] = [render(ctx, tx, o) for o in fits]
            out.append(p)
        return out

    return await ctx.db.read(op)


async def get_payment(ctx: Context, merchant_id: str, payment_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_payment(tx, merchant_id, payment_id)
        if row is None:
            raise NotFound("no such payment")
        return payment_json(row)

    return await ctx.db.read(op)


async def match_manually(ctx: Context, merchant_id: str, payment_id: str, order_id: str) -> dict[str, Any]:
    """A human says this unmatched payment pays that order: order -> paid (manual), one transaction."""

    def op(tx: Tx) -> dict[str, Any]:
        now = ctx.clock.now_ms()
        payment = store.get_payment(tx, merchant_id, payment_id)
        if payment is None:
            raise NotFound("no such payment")
        order = orders_store.get_order(tx, merchant_id, order_id)
        if order is None:
            raise NotFound("no such order")
        if payment["status"] != PaymentStatus.UNMATCHED:
            raise Conflict(f"this payment is already {payment['status']}", "payment_not_unmatched")
        if order["status"] not in ("pending", "expired"):
            raise Conflict(
                f"this order is {order['status']}; only pending or expired orders can be paid", "order_not_payable"
            )
        transition(PaymentStatus.UNMATCHED, PaymentStatus.MATCHED)
        store.set_payment_status(
            tx, payment_id, status=PaymentStatus.MATCHED, reason="manual", order_id=order_id, manual=True
        )
        mark_paid(
            ctx, tx, merchant_id=merchant_id, order_id=order_id, payment_id=payment_id, now=now, late=False, manual=True
        )
        fresh = orders_store.get_order(tx, merchant_id, order_id)
        paid = store.get_payment(tx, merchant_id, payment_id)
        assert fresh is not None and paid is not None
        return {"payment": payment_json(paid), "order": render(ctx, tx, fresh)}

    return await ctx.db.write(op)


async def ignore(ctx: Context, merchant_id: str, payment_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        payment = store.get_payment(tx, merchant_id, payment_id)
        if payment is None:
            raise NotFound("no such payment")
        if payment["status"] != PaymentStatus.UNMATCHED:
            raise Conflict(f"this payment is already {payment['status']}", "payment_not_unmatched")
        store.set_payment_status(
            tx, payment_id, status=PaymentStatus.IGNORED, reason="ignored_by_merchant", manual=True
        )
        row = store.get_payment(tx, merchant_id, payment_id)
        assert row is not None
        return payment_json(row)

    return await ctx.db.write(op)


async def create_account(
    ctx: Context, merchant_id: str, *, channel: str, name: str, qr_payload: str | None, device_ids: list[str]
) -> dict[str, Any]:
    account_id = new_id("acc")

    def op(tx: Tx) -> dict[str, Any]:
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
        row = merchants_store.get_account(tx, merchant_id, account_id)
        out = account_json(row)
        assert out is not None
        out["device_ids"] = device_ids
        return out

    return await ctx.db.write(op)


async def list_accounts(ctx: Context, merchant_id: str) -> list[dict[str, Any]]:
    def op(tx: Tx) -> list[dict[str, Any]]:
        out = []
        for row in merchants_store.accounts_for_merchant(tx, merchant_id):
            a = account_json(row)
            assert a is not None
            a["device_ids"] = merchants_store.account_device_ids(tx, row["id"])
            out.append(a)
        return out

    return await ctx.db.read(op)


async def link_device(ctx: Context, merchant_id: str, account_id: str, device_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        if merchants_store.get_account(tx, merchant_id, account_id) is None:
            raise NotFound("no such account")
        d = devices_store.get_device(tx, device_id)
        if d is None or d.merchant_id != merchant_id:
            raise NotFound("no such device")
        devices_store.link_account(tx, device_id, account_id)
        return {"account_id": account_id, "device_id": device_id}

    return await ctx.db.write(op)
