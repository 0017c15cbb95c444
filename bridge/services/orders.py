"""Creating, reading, closing and expiring orders; unique pay amounts per receiving account."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.core.amounts import candidate_amounts
from bridge.errors import Conflict, NotFound
from bridge.ids import new_id
from bridge.services.checkout import checkout_url
from bridge.services.context import Context
from bridge.services.endpoints import deliveries_of_event
from bridge.services.events import emit
from bridge.services.views import order_json, payment_json
from bridge.store import devices as devices_store
from bridge.store import events as events_store
from bridge.store import merchants as merchants_store
from bridge.store import orders as store
from bridge.store import payments as payments_store
from bridge.store.database import Row, Tx

__all__ = [
    "ORDER_CHANNELS",
    "NewOrder",
    "close_order",
    "create_order",
    "create_order_in",
    "expire_orders",
    "get_order",
    "implicit_slot",
    "list_orders",
    "order_timeline",
    "render",
]

log = structlog.get_logger("bridge.orders")
QUARANTINE_MAX = 1000  # orders a sweep skips after they failed even to expire (each logged)
ORDER_CHANNELS = ("alipay", "wechat", "unionpay", "any")
WALLETS = ("alipay", "wechat", "unionpay")


@dataclass(frozen=True, slots=True)
class NewOrder:
    merchant_order_id: str
    amount_cents: int
    channel: str
    expires_in: int
    notify_url: str | None
    metadata: dict[str, Any]
    return_url: str | None = None  # where the checkout page sends the payer once paid
    description: str | None = None  # what is bought, shown on the checkout page

    def params_hash(self) -> str:
        fields: list[Any] = [self.amount_cents, self.channel, self.expires_in, self.notify_url, self.metadata]
        if self.return_url is not None or self.description is not None:
            fields += [self.return_url, self.description]  # only then: older orders keep their hashes
        canon = json.dumps(
            fields,
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canon.encode()).hexdigest()


def render(ctx: Context, tx: Tx, row: Row) -> dict[str, Any]:
    account = None
    if row["account_id"] is not None:
        account = merchants_store.get_account(tx, row["merchant_id"], row["account_id"])
    return order_json(row, account, checkout_url=checkout_url(ctx, row["id"]))


def implicit_slot(merchant_id: str, channel: str) -> str:
    """The slot of a channel for which the merchant has no receiving account: every phone sees it."""
    return f"{merchant_id}:{channel}"


def _slot_groups(tx: Tx, merchant_id: str, channel: str) -> list[tuple[str | None, list[str]]]:
    """The ways to place an order: (account id or None, the slots it must hold), best first."""
    accounts = merchants_store.accounts_for_merchant(tx, merchant_id)
    by_channel: dict[str, list[Row]] = {}
    for a in accounts:
        by_channel.setdefault(a["channel"], []).append(a)
    if channel == "any":
        slots: list[str] = []
        for wallet in WALLETS:
            acc = by_channel.get(wallet)
            slots.extend([str(a["id"]) for a in acc] if acc else [implicit_slot(merchant_id, wallet)])
        return [(None, slots)]
    chosen = by_channel.get(channel)
    if not chosen:
        return [(None, [implicit_slot(merchant_id, channel)])]
    online = devices_store.online_account_ids(tx, merchant_id)
    ordered = sorted(chosen, key=lambda a: (a["id"] not in online,))  # online first, then creation order
    # An `any` order holds every slot including the implicit one; accounts also collide with it.
    return [(str(a["id"]), [str(a["id"])]) for a in ordered]


async def create_order(ctx: Context, merchant_id: str, new: NewOrder) -> tuple[dict[str, Any], bool, list[str]]:
    """Create (or return the identical existing) order; (order JSON, created?, warnings)."""
    return await ctx.db.write(lambda tx: create_order_in(ctx, tx, merchant_id, new))


def create_order_in(ctx: Context, tx: Tx, merchant_id: str, new: NewOrder) -> tuple[dict[str, Any], bool, list[str]]:
    """`create_order` inside the caller's transaction (the shop gateways add their own row to it)."""
    s = ctx.settings
    params_hash = new.params_hash()
    now = ctx.clock.now_ms()
    warnings = [] if devices_store.merchant_has_online_device(tx, merchant_id) else ["no_online_device"]
    existing = store.get_order_by_merchant_ref(tx, merchant_id, new.merchant_order_id)
    if existing is not None:
        if existing["params_hash"] != params_hash:
            raise Conflict(
                "an order with this merchant_order_id exists with different parameters",
                "merchant_order_id_conflict",
            )
        return render(ctx, tx, existing), False, warnings
    amounts = candidate_amounts(
        new.amount_cents, steps=s.amount_steps, step=s.amount_step_cents, direction=s.amount_direction
    )
    groups = _slot_groups(tx, merchant_id, new.channel)
    all_slots = sorted({slot for _, slots in groups for slot in slots})
    taken = store.slots_taken(tx, all_slots, amounts)
    order_id = new_id("ord")
    for amount in amounts:
        for account_id, slots in groups:
            if any((slot, amount) in taken for slot in slots):
                continue
            store.insert_order(
                tx,
                id=order_id,
                merchant_id=merchant_id,
                merchant_order_id=new.merchant_order_id,
                channel=new.channel,
                amount_cents=new.amount_cents,
                pay_amount_cents=amount,
                account_id=account_id,
                notify_url=new.notify_url,
                return_url=new.return_url,
                description=new.description,
                metadata=json.dumps(new.metadata, ensure_ascii=False),
                params_hash=params_hash,
                now=now,
                expires_at=now + new.expires_in * 1000,
            )
            for slot in slots:
                if not store.lock_amount(tx, slot, amount, order_id):
                    raise Conflict("pay amount taken concurrently; retry", "amount_exhausted")
            row = store.get_order(tx, merchant_id, order_id)
            assert row is not None
            tx.after_commit.append(ctx.metrics.orders.inc)
            return render(ctx, tx, row), True, warnings
    raise Conflict(
        "every pay amount near this amount is held by a pending order; retry later or pick another amount",
        "amount_exhausted",
    )


async def get_order(ctx: Context, merchant_id: str, order_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_order(tx, merchant_id, order_id)
        if row is None:
            raise NotFound("no such order")
        return render(ctx, tx, row)

    return await ctx.db.read(op)


async def close_order(ctx: Context, merchant_id: str, order_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        now = ctx.clock.now_ms()
        row = store.get_order(tx, merchant_id, order_id)
        if row is None:
            raise NotFound("no such order")
        if not store.set_closed(tx, order_id, now=now):
            raise Conflict(f"only pending orders can be closed; this one is {row['status']}", "order_not_pending")
        row = store.get_order(tx, merchant_id, order_id)
        assert row is not None
        data = render(ctx, tx, row)
        emit(
            tx,
            ctx.bus,
            merchant_id=merchant_id,
            type="order.closed",
            data={"order": data},
            now=now,
            notify_url=row["notify_url"],
        )
        return data

    return await ctx.db.write(op)


async def expire_orders(ctx: Context, limit: int = 500, quarantine: set[str] | None = None) -> int:
    """Expire pending orders whose time is up (one transaction per batch); return how many were handled.

    Each order is expired under its own savepoint, so one bad row (say, metadata stored before
    nesting was bounded, which no event can encode) cannot fail the batch and keep every other
    merchant's amounts locked. An order whose event fails is still expired, without the event
    (logged); one that cannot even be expired joins `quarantine`, which later sweeps skip.
    """
    skip = quarantine if quarantine is not None else set()

    def op(tx: Tx) -> int:
        now = ctx.clock.now_ms()
        handled = 0
        for order_id in store.due_for_expiry(tx, now=now, limit=limit, exclude=sorted(skip)):
            try:
                with tx.savepoint():
                    _expire_one(tx, ctx, order_id, now)
                handled += 1
                continue
            except Exception as e:
                log.error("order.expiry_event_failed", order_id=order_id, error=repr(e))
            try:
                with tx.savepoint():
                    store.set_expired(tx, order_id)
                handled += 1
            except Exception as e:
                log.error("order.expiry_failed", order_id=order_id, error=repr(e))
                if len(skip) < QUARANTINE_MAX:
                    skip.add(order_id)
                    handled += 1
        return handled

    return await ctx.db.write(op)


def _expire_one(tx: Tx, ctx: Context, order_id: str, now: int) -> None:
    row = store.set_expired(tx, order_id)
    if row is None:
        return
    emit(
        tx,
        ctx.bus,
        merchant_id=row["merchant_id"],
        type="order.expired",
        data={"order": render(ctx, tx, row)},
        now=now,
        notify_url=row["notify_url"],
    )


async def list_orders(
    ctx: Context,
    merchant_id: str,
    *,
    merchant_order_id: str | None,
    status: str | None,
    before: str | None,
    limit: int,
    channel: str | None = None,
    created_from: int | None = None,
    created_to: int | None = None,
) -> dict[str, Any]:
    """A page of orders, newest first; pass the last id as `starting_after` for the next page.
    `created_from` / `created_to` (Unix ms, to exclusive) and `channel` narrow it (the dashboard's filters)."""

    def op(tx: Tx) -> dict[str, Any]:
        rows = store.list_orders(
            tx,
            merchant_id,
            merchant_order_id=merchant_order_id,
            status=status,
            before=before,
            limit=limit + 1,
            channel=channel,
            created_from=created_from,
            created_to=created_to,
        )
        data = [render(ctx, tx, r) for r in rows[:limit]]
        return {"data": data, "has_more": len(rows) > limit}

    return await ctx.db.read(op)


async def order_timeline(ctx: Context, merchant_id: str, order_id: str) -> dict[str, Any]:
    """An order with what happened to it: the payment that paid it (and the phone that saw it), and
    every `order.*` event with each delivery (webhook endpoint or notify_url) and its attempts."""

    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_order(tx, merchant_id, order_id)
        if row is None:
            raise NotFound("no such order")
        payment = None
        if row["payment_id"] is not None:
            p = payments_store.get_payment(tx, merchant_id, row["payment_id"])
            if p is not None:
                payment = payment_json(p)
                device = devices_store.get_device(tx, p["device_id"])
                payment["device_name"] = None if device is None else device.name
        events = []
        for e in events_store.order_events(tx, merchant_id, order_id, since=row["created_at"]):
            body = json.loads(e["body"])
            if body.get("data", {}).get("order", {}).get("id") != order_id:
                continue
            events.append(
                {
                    "id": e["id"],
                    "type": e["type"],
                    "created_at": body["timestamp"],
                    "deliveries": deliveries_of_event(tx, merchant_id, e["id"]),
                }
            )
        return {"order": render(ctx, tx, row), "payment": payment, "events": events}

    return await ctx.db.read(op)
