"""What the payer's checkout page (`/pay/<order id>`) shows, and where it sends the payer once paid.

The order id is the capability: whoever holds it may see this, and nothing else (no merchant
data beyond the shop's name, no notify URL, no metadata).

`paid_return_url` is the one place that decides where a paid order's payer goes next; protocol
adapters (易支付, V免签) extend it so their orders return to their own signed URL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from bridge.core.models.account import Account
from bridge.core.models.order import Order
from bridge.core.states import OrderStatus
from bridge.errors import NotFound
from bridge.services.compat_notify import compat_return_url
from bridge.services.context import Context
from bridge.store import merchants as merchants_store
from bridge.store import orders as store
from bridge.store.database import Tx

__all__ = [
    "Checkout",
    "PayAccount",
    "checkout_path",
    "checkout_url",
    "load_checkout",
    "paid_return_url",
]


@dataclass(frozen=True, slots=True)
class PayAccount:
    """A receiving account the payer may pay into."""

    id: str
    name: str
    channel: str  # alipay, wechat or unionpay
    qr_payload: str


@dataclass(frozen=True, slots=True)
class Checkout:
    order_id: str
    shop_name: str
    description: str | None
    status: OrderStatus  # the order's status; a pending order past its time reads "expired"
    channel: str  # the order's channel; "any" lets the payer pick among `choices`
    amount_cents: int  # what the shop asked
    pay_amount_cents: int  # what the payer must pay, to the fen
    expires_at: int  # Unix ms
    now: int  # Unix ms, when this was read
    account: PayAccount | None  # whose QR code to show (None: the shop registered none for this order)
    choices: tuple[PayAccount, ...]  # for `any` orders: every account holding this order's pay amount
    return_to: str | None  # once paid: where the payer goes next
    watch: bool  # the status may still change: the page keeps refreshing

    @property
    def seconds_left(self) -> int:
        return max(0, (self.expires_at - self.now + 999) // 1000) if self.status is OrderStatus.PENDING else 0

    @property
    def amount_differs(self) -> bool:
        return self.amount_cents != self.pay_amount_cents


def checkout_path(order_id: str) -> str:
    return f"/pay/{order_id}"


def checkout_url(ctx: Context, order_id: str) -> str:
    """The absolute checkout URL of an order (`checkout_url` in the order JSON)."""
    return ctx.public_url(checkout_path(order_id))


async def paid_return_url(ctx: Context, order: Order) -> str | None:
    """Where the checkout page sends the payer of a paid order: THE seam for return targets.

    Called for paid orders only, at every page view and status poll (so a target signed with a
    timestamp is fresh each time). The shop gateways' signed return for their orders, else the order's
    own `return_url`.
    """
    signed = await compat_return_url(ctx, order.id)  # 易支付 / V免签: the shop's signed return
    if signed is not None:
        return signed
    return order.return_url


def _account(a: Account) -> PayAccount | None:
    if not a.qr_payload:
        return None
    return PayAccount(id=a.id, name=a.name, channel=a.channel, qr_payload=a.qr_payload)


def _read(ctx: Context, tx: Tx, order_id: str, pick: str | None) -> tuple[Order, Checkout]:
    order = store.find_order(tx, order_id)
    if order is None:
        raise NotFound("no such order")
    merchant = merchants_store.get_merchant(tx, order.merchant_id)
    assert merchant is not None
    now = ctx.clock.now_ms()
    status = order.status
    if status is OrderStatus.PENDING and order.expires_at <= now:
        status = OrderStatus.EXPIRED  # the expiry loop has not run yet; the payer must not pay now
    s = ctx.settings
    late_until = order.expires_at + s.late_grace * 1000 if s.accept_late else order.expires_at
    account: PayAccount | None = None
    choices: tuple[PayAccount, ...] = ()
    if order.account_id is not None:
        found = merchants_store.get_account(tx, order.merchant_id, order.account_id)
        account = None if found is None else _account(found)
    elif status is OrderStatus.PENDING:
        # An `any` order holds its pay amount on every account the merchant had when it was
        # created (and on the implicit per-channel slots): the payer may use any of those, with
        # the same amount; accounts added later are not offered (another order may hold it there).
        held = store.held_slots(tx, order_id)
        accounts = [a for a in merchants_store.accounts_for_merchant(tx, order.merchant_id) if a.id in held]
        if order.channel != "any":
            accounts = [a for a in accounts if a.channel == order.channel]
        choices = tuple(p for p in (_account(a) for a in accounts) if p is not None)
        account = next((a for a in choices if a.id == pick), choices[0] if choices else None)
    checkout = Checkout(
        order_id=order.id,
        shop_name=merchant.name,
        description=order.description,
        status=status,
        channel=order.channel,
        amount_cents=order.amount_cents,
        pay_amount_cents=order.pay_amount_cents,
        expires_at=order.expires_at,
        now=now,
        account=account,
        choices=choices if len(choices) > 1 else (),
        return_to=None,
        watch=status is OrderStatus.PENDING or (status is OrderStatus.EXPIRED and now < late_until),
    )
    return order, checkout


async def load_checkout(ctx: Context, order_id: str, *, pick: str | None = None) -> Checkout:
    """Everything the page shows for an order; `pick` chooses the account of an `any` order. NotFound if unknown."""
    order, checkout = await ctx.db.read(lambda tx: _read(ctx, tx, order_id, pick))
    if checkout.status is not OrderStatus.PAID:
        return checkout
    url = await paid_return_url(ctx, order)
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        url = None  # the page navigates there by itself: never to javascript: or an app scheme
    return replace(checkout, return_to=url)
