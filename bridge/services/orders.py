"""Creating, reading, closing and expiring orders; unique pay amounts per receiving account."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.core.amounts import candidate_amounts
from bridge.core.models.account import Account
from bridge.core.models.ids import AccountId
from bridge.core.models.order import Order, OrderDetail, OrderTimeline
from bridge.core.models.page import Page
from bridge.errors import Conflict, NotFound
from bridge.ids import new_id
from bridge.services.context import Context
from bridge.services.endpoints import deliveries_of_event
from bridge.services.events import emit
from bridge.services.views import order_out
from bridge.store import devices as devices_store
from bridge.store import events as events_store
from bridge.store import merchants as merchants_store
from bridge.store import orders as store
from bridge.store import payments as payments_store
from bridge.store.database import Tx

__all__ = [
    "ORDER_CHANNELS",
    "NewOrder",
    "close_order",
    "create_order",
    "create_order_in",
    "detail",
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


def detail(tx: Tx, order: Order) -> OrderDetail:
    """The order with the receiving account it shows."""
    account = None
    if order.account_id is not None:
        account = merchants_store.get_account(tx, order.merchant_id, order.account_id)
    return OrderDetail(order, account)


def render(ctx: Context, tx: Tx, order: Order) -> dict[str, Any]:
    """The order's JSON, for the events a change raises (in the change's own transaction)."""
    return order_out(ctx, detail(tx, order))


def implicit_slot(merchant_id: str, channel: str) -> str:
    """The slot of a channel for which the merchant has no receiving account: every phone sees it."""
    return f"{merchant_id}:{channel}"


def _slot_groups(tx: Tx, merchant_id: str, channel: str) -> list[tuple[AccountId | None, list[str]]]:
    """The ways to place an order: (account id or None, the slots it must hold), best first."""
    accounts = merchants_store.accounts_for_merchant(tx, merchant_id)
    by_channel: dict[str, list[Account]] = {}
    for a in accounts:
        by_channel.setdefault(a.channel, []).append(a)
    if channel == "any":
        slots: list[str] = []
        for wallet in WALLETS:
            acc = by_channel.get(wallet)
            slots.extend([a.id for a in acc] if acc else [implicit_slot(merchant_id, wallet)])
        return [(None, slots)]
    chosen = by_channel.get(channel)
    if not chosen:
        return [(None, [implicit_slot(merchant_id, channel)])]
    online = devices_store.online_account_ids(tx, merchant_id)
    ordered = sorted(chosen, key=lambda a: (a.id not in online,))  # online first, then creation order
    # An `any` order holds every slot including the implicit one; accounts also collide with it.
    return [(a.id, [a.id]) for a in ordered]


async def create_order(ctx: Context, merchant_id: str, new: NewOrder) -> tuple[OrderDetail, bool, list[str]]:
    """Create (or return the identical existing) order; (the order, created?, warnings)."""

    def op(tx: Tx) -> tuple[OrderDetail, bool, list[str]]:
        order, created, warnings = create_order_in(ctx, tx, merchant_id, new)
        return detail(tx, order), created, warnings

    return await ctx.db.write(op)


def create_order_in(ctx: Context, tx: Tx, merchant_id: str, new: NewOrder) -> tuple[Order, bool, list[str]]:
    """`create_order` inside the caller's transaction (the shop gateways add their own row to it)."""
    s = ctx.settings
    params_hash = new.params_hash()
    now = ctx.clock.now_ms()
    warnings = [] if devices_store.merchant_has_online_device(tx, merchant_id) else ["no_online_device"]
    existing = store.get_order_by_merchant_ref(tx, merchant_id, new.merchant_order_id)
    if existing is not None:
        return _same_order(existing, params_hash), False, warnings
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
            order = store.insert_order(
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
            if order is None:  # another process created it since we looked (PostgreSQL): it won
                winner = store.get_order_by_merchant_ref(tx, merchant_id, new.merchant_order_id)
                if winner is None:  # it was created and is gone again: cannot happen (orders are kept)
                    raise Conflict("order created concurrently; retry", "merchant_order_id_conflict")
                return _same_order(winner, params_hash), False, warnings
            for slot in slots:
                if not store.lock_amount(tx, slot, amount, order_id):
                    raise Conflict("pay amount taken concurrently; retry", "amount_exhausted")
            tx.after_commit.append(ctx.metrics.orders.inc)
            return order, True, warnings
    raise Conflict(
        "every pay amount near this amount is held by a pending order; retry later or pick another amount",
        "amount_exhausted",
    )


def _same_order(existing: Order, params_hash: str) -> Order:
    """The existing order of a repeated create, if it was made with the same parameters; else Conflict."""
    if existing.params_hash != params_hash:
        raise Conflict(
            "an order with this merchant_order_id exists with different parameters",
            "merchant_order_id_conflict",
        )
    return existing


async def get_order(ctx: Context, merchant_id: str, order_id: str) -> OrderDetail:
    def op(tx: Tx) -> OrderDetail:
        order = store.get_order(tx, merchant_id, order_id)
        if order is None:
            raise NotFound("no such order")
        return detail(tx, order)

    return await ctx.db.read(op)


async def close_order(ctx: Context, merchant_id: str, order_id: str) -> OrderDetail:
    def op(tx: Tx) -> OrderDetail:
        now = ctx.clock.now_ms()
        order = store.get_order(tx, merchant_id, order_id)
        if order is None:
            raise NotFound("no such order")
        closed = store.set_closed(tx, order_id, now=now)
        if closed is None:
            raise Conflict(f"only pending orders can be closed; this one is {order.status}", "order_not_pending")
        out = detail(tx, closed)
        emit(
            tx,
            ctx.bus,
            merchant_id=merchant_id,
            type="order.closed",
            data={"order": order_out(ctx, out)},
            now=now,
            notify_url=closed.notify_url,
        )
        return out

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
    order = store.set_expired(tx, order_id)
    if order is None:
        return
    emit(
        tx,
        ctx.bus,
        merchant_id=order.merchant_id,
        type="order.expired",
        data={"order": render(ctx, tx, order)},
        now=now,
        notify_url=order.notify_url,
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
) -> Page[OrderDetail]:
    """A page of orders, newest first; pass the last id as `starting_after` for the next page.
    `created_from` / `created_to` (Unix ms, to exclusive) and `channel` narrow it (the dashboard's filters)."""

    def op(tx: Tx) -> Page[OrderDetail]:
        orders = store.list_orders(
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
        return Page(tuple(detail(tx, o) for o in orders[:limit]), has_more=len(orders) > limit)

    return await ctx.db.read(op)


async def order_timeline(ctx: Context, merchant_id: str, order_id: str) -> OrderTimeline:
    """An order with what happened to it: the payment that paid it (and the phone that saw it), and
    every `order.*` event with each delivery (webhook endpoint or notify_url) and its attempts."""

    def op(tx: Tx) -> OrderTimeline:
        order = store.get_order(tx, merchant_id, order_id)
        if order is None:
            raise NotFound("no such order")
        payment = device_name = None
        if order.payment_id is not None:
            payment = payments_store.get_payment(tx, merchant_id, order.payment_id)
            if payment is not None:
                device = devices_store.get_device(tx, payment.device_id)
                device_name = None if device is None else device.name
        events = []
        for e in events_store.order_events(tx, merchant_id, order_id, since=order.created_at):
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
        return OrderTimeline(detail(tx, order), payment, device_name, tuple(events))

    return await ctx.db.read(op)
