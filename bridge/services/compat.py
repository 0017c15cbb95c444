"""Shop gateways (易支付 V1/V2, V免签): compat credentials, verifying shop requests, and their orders.

A merchant's compat credentials are made on first use: `pid` (>= 1000, in order), a 32-character
key (MD5 signs and V免签), and a platform RSA key pair per merchant (V2 responses and notifies).
Orders go through the orders service with `merchant_order_id = out_trade_no`; the shop's own
strings (money as sent, type, name, param, URLs) live beside them in `compat_orders`, written in
the same transaction. The same `out_trade_no` with the same parameters is the same order; with
changed ones it is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.core import epay, vmq
from bridge.core.models.compat import CompatOrder, Shop, ShopOrderDetail
from bridge.core.models.order import OrderDetail
from bridge.core.ssrf import check_target
from bridge.errors import BadRequest, Conflict, NotFound, Unauthorized
from bridge.services.checkout import checkout_url
from bridge.services.context import Context
from bridge.services.orders import NewOrder, close_order, create_order_in, detail
from bridge.store import compat as store
from bridge.store import devices as devices_store
from bridge.store import orders as orders_store
from bridge.store.database import Tx

__all__ = [
    "Shop",
    "ShopOrder",
    "checkout_url",
    "close_shop_order",
    "create_shop_order",
    "credentials",
    "find_shop_order",
    "key_fingerprint",
    "key_matches",
    "monitor_state",
    "rotate_key",
    "rotate_key_if",
    "set_merchant_public_key",
    "shop_by_pid",
    "shop_order",
    "sign_v2",
    "verify_v1",
    "verify_v2",
    "verify_vmq",
]

log = structlog.get_logger("bridge.compat")

MAX_NAME = 256
MAX_PARAM = 1024
MAX_URL = 2048


@dataclass(frozen=True, slots=True)
class ShopOrder:
    """An order as a shop asked for it, validated; strings kept exactly as sent."""

    protocol: str  # epay1, epay2, vmq
    out_trade_no: str
    money: str
    amount_cents: int
    pay_type: str | None  # the shop's type (alipay/wxpay/bank, or V免签 1/2); None: the payer picks
    channel: str
    name: str
    param: str
    notify_url: str | None
    return_url: str | None

    def params_hash(self) -> str:
        canon = json.dumps(
            [self.protocol, self.money, self.pay_type, self.name, self.param, self.notify_url, self.return_url],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canon.encode()).hexdigest()


def _new_key() -> str:
    return "".join(secrets.choice(epay.KEY_ALPHABET) for _ in range(epay.KEY_LENGTH))


async def _ensure(ctx: Context, merchant_id: str) -> Shop:
    def read(tx: Tx) -> Shop | None:
        return store.get_merchant(tx, merchant_id)

    shop = await ctx.db.read(read)
    if shop is not None:
        return shop
    # RSA key generation is CPU work: off the event loop, before the (short) write.
    private = await asyncio.to_thread(rsa.generate_private_key, public_exponent=65537, key_size=2048)
    private_b64, public_b64 = epay.private_key_b64(private), epay.public_key_b64(private.public_key())

    def write(tx: Tx) -> Shop:
        existing = store.get_merchant(tx, merchant_id)
        if existing is None:
            store.insert_merchant(
                tx,
                merchant_id=merchant_id,
                key=_new_key(),
                platform_private_key=private_b64,
                platform_public_key=public_b64,
                now=ctx.clock.now_ms(),
            )
            existing = store.get_merchant(tx, merchant_id)
        assert existing is not None
        return existing

    return await ctx.db.write(write)


async def credentials(ctx: Context, merchant_id: str) -> Shop:
    """The merchant's pid, key and platform keys (made on first use)."""
    return await _ensure(ctx, merchant_id)


def key_fingerprint(key: str) -> str:
    """A short SHA-256 of a compat key: names which key a form was made for without revealing it."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


async def _rotate(ctx: Context, merchant_id: str, if_fingerprint: str | None) -> tuple[Shop, bool]:
    await _ensure(ctx, merchant_id)

    def op(tx: Tx) -> tuple[Shop, bool]:
        shop = store.get_merchant(tx, merchant_id)
        assert shop is not None
        if if_fingerprint is not None and not hmac.compare_digest(key_fingerprint(shop.key), if_fingerprint):
            return shop, False
        store.set_key(tx, merchant_id, _new_key(), now=ctx.clock.now_ms())
        shop = store.get_merchant(tx, merchant_id)
        assert shop is not None
        return shop, True

    shop, rotated = await ctx.db.write(op)
    if rotated:
        log.info("compat.key_rotated", merchant_id=merchant_id)
    return shop, rotated


async def rotate_key(ctx: Context, merchant_id: str) -> Shop:
    """A new compat key; the old one stops working at once (notifies still queued are signed with the new one)."""
    creds, _ = await _rotate(ctx, merchant_id, None)
    return creds


async def rotate_key_if(ctx: Context, merchant_id: str, fingerprint: str) -> tuple[Shop, bool]:
    """Rotate only while the current key has `fingerprint` (see `key_fingerprint`): a form submitted twice,
    or from two tabs, rotates once. Returns the credentials and whether this call rotated."""
    return await _rotate(ctx, merchant_id, fingerprint)


async def set_merchant_public_key(ctx: Context, merchant_id: str, public_key: str | None) -> Shop:
    """Register (or clear, with None) the merchant's RSA public key that V2 requests are verified with."""
    if public_key is not None:
        try:
            key = epay.load_public_key(public_key)
        except ValueError as e:
            raise BadRequest(f"merchant_public_key: {e} (send base64 SPKI or PEM)", "invalid_public_key") from None
        public_key = epay.public_key_b64(key)
    await _ensure(ctx, merchant_id)

    def op(tx: Tx) -> Shop:
        store.set_merchant_public_key(tx, merchant_id, public_key, now=ctx.clock.now_ms())
        shop = store.get_merchant(tx, merchant_id)
        assert shop is not None
        return shop

    return await ctx.db.write(op)


async def shop_by_pid(ctx: Context, pid: str | None) -> Shop:
    if not pid or not pid.isascii() or not pid.isdigit() or len(pid) > 12:
        raise BadRequest("pid is required: the merchant number from `paybridge compat`", "invalid_pid")

    def op(tx: Tx) -> Shop | None:
        return store.get_merchant_by_pid(tx, int(pid))

    shop = await ctx.db.read(op)
    if shop is None:
        raise NotFound("unknown pid", "unknown_pid")
    return shop


def key_matches(shop: Shop, key: str) -> bool:
    """The plain key `api.php` sends, compared in constant time."""
    return hmac.compare_digest(shop.key.encode(), key.encode("utf-8", "replace"))


def verify_v1(shop: Shop, params: Mapping[str, str]) -> None:
    """An MD5-signed 易支付 request, verified over every parameter received."""
    sign_type = params.get("sign_type", "MD5")
    if sign_type.upper() != "MD5":
        raise BadRequest("sign_type must be MD5 here (RSA requests go to /api/pay/*)", "invalid_sign_type")
    if not epay.md5_verify(params, shop.key, params.get("sign", "")):
        raise Unauthorized("sign mismatch: check the key", "invalid_sign")


def verify_v2(shop: Shop, params: Mapping[str, str], now_ms: int) -> None:
    """An RSA-signed 易支付 V2 request: a fresh timestamp and the merchant's signature."""
    if shop.merchant_public_key is None:
        raise Unauthorized(
            "no merchant RSA public key registered: PUT /v1/compat {merchant_public_key}", "no_merchant_public_key"
        )
    if params.get("sign_type", "RSA") != "RSA":
        raise BadRequest("sign_type must be RSA", "invalid_sign_type")
    if not epay.timestamp_fresh(params.get("timestamp", ""), now_ms // 1000):
        raise BadRequest("timestamp missing or more than 300 s away from our clock", "invalid_timestamp")
    if not epay.rsa_verify(params, epay.load_public_key(shop.merchant_public_key), params.get("sign", "")):
        raise Unauthorized("sign mismatch: check the merchant key pair", "invalid_sign")


def verify_vmq(shop: Shop, parts: list[str], sign: str) -> None:
    """A V免签 sign: md5 over the concatenated raw strings and the key."""
    if not vmq.verify_concat(parts, shop.key, sign):
        raise Unauthorized("sign mismatch: check the key", "invalid_sign")


def sign_v2(shop: Shop, fields: Mapping[str, str | int], now_ms: int) -> dict[str, Any]:
    """A V2 response: the fields (strings and integers only) with a fresh timestamp, signed by the platform."""
    out: dict[str, Any] = {**fields, "timestamp": str(now_ms // 1000)}
    as_text = {k: str(v) for k, v in out.items() if v is not None}
    out["sign"] = epay.rsa_sign(as_text, epay.load_private_key(shop.platform_private_key))
    out["sign_type"] = "RSA"
    return out


def _url(value: str | None, name: str, allow_private: bool) -> str | None:
    if value is None or value.strip() == "":
        return None
    if len(value) > MAX_URL:
        raise BadRequest(f"{name} is too long (at most {MAX_URL} characters)", "invalid_url")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise BadRequest(f"{name} must be an absolute http:// or https:// URL", "invalid_url")
    refused = check_target(value, [], allow_private=allow_private)
    if refused:
        raise BadRequest(f"{name}: loopback, private or metadata addresses are refused ({refused})", "invalid_url")
    return value


def shop_order(
    ctx: Context,
    *,
    protocol: str,
    out_trade_no: str | None,
    money: str | None,
    pay_type: str | None,
    channel: str,
    name: str | None,
    param: str | None,
    notify_url: str | None,
    return_url: str | None,
) -> ShopOrder:
    """Validate what a shop sent (after its sign checked out); BadRequest names the field."""
    try:
        out_trade_no = epay.check_out_trade_no(out_trade_no or "")
    except ValueError as e:
        raise BadRequest(str(e), "invalid_out_trade_no") from None
    if not money:
        raise BadRequest("money is required", "invalid_money")
    try:
        amount_cents = epay.money_fen(money)
    except ValueError as e:
        raise BadRequest(f"money: {e}", "invalid_money") from None
    name = epay.php_trim(name or "")
    param = epay.php_trim(param or "")
    if len(name) > MAX_NAME:
        raise BadRequest(f"name is too long (at most {MAX_NAME} characters)", "invalid_name")
    if len(param) > MAX_PARAM:
        raise BadRequest(f"param is too long (at most {MAX_PARAM} characters)", "invalid_param")
    allow = ctx.settings.allow_private_webhooks
    return ShopOrder(
        protocol=protocol,
        out_trade_no=out_trade_no,
        money=money,
        amount_cents=amount_cents,
        pay_type=pay_type or None,
        channel=channel,
        name=name,
        param=param,
        notify_url=_url(notify_url, "notify_url", allow),
        return_url=_url(return_url, "return_url", allow),
    )


def _order_view(tx: Tx, compat: CompatOrder, *, created: bool = False) -> ShopOrderDetail:
    order = orders_store.get_order(tx, compat.merchant_id, compat.order_id)
    assert order is not None
    return ShopOrderDetail(detail(tx, order), compat, created)


async def create_shop_order(ctx: Context, shop: Shop, order: ShopOrder) -> ShopOrderDetail:
    """Create the order (or return the identical one, `created` False)."""
    params_hash = order.params_hash()

    def op(tx: Tx) -> ShopOrderDetail:
        # The order first, then its compat row: both commit in one transaction, so once the order is
        # seen its row is too (read the other way round, another instance's commit landing between
        # the two reads made a repeat look like an API order's reference).
        if orders_store.get_order_by_merchant_ref(tx, shop.merchant_id, order.out_trade_no) is not None:
            existing = store.get_compat_order_by_ref(tx, shop.merchant_id, order.out_trade_no)
            if existing is None:
                raise Conflict("an API order already uses this out_trade_no", "out_trade_no_conflict")
            if existing.params_hash != params_hash:
                raise Conflict(
                    "an order with this out_trade_no exists with different parameters", "out_trade_no_conflict"
                )
            return _order_view(tx, existing)
        metadata: dict[str, Any] = {"source": order.protocol}
        if order.name:
            metadata["name"] = order.name
        new = NewOrder(
            merchant_order_id=order.out_trade_no,
            amount_cents=order.amount_cents,
            channel=order.channel,
            expires_in=ctx.settings.order_ttl_default,
            notify_url=None,  # compat notifies have their own delivery: no Standard Webhooks to the shop
            metadata=metadata,
        )
        made, created, _ = create_order_in(ctx, tx, shop.merchant_id, new)
        if not created:  # another process made it since we looked (PostgreSQL): the same, or refused
            winner = store.get_compat_order(tx, made.id)
            if winner is None:
                raise Conflict("an API order already uses this out_trade_no", "out_trade_no_conflict")
            if winner.params_hash != params_hash:
                raise Conflict(
                    "an order with this out_trade_no exists with different parameters", "out_trade_no_conflict"
                )
            return _order_view(tx, winner)
        store.insert_compat_order(
            tx,
            order_id=made.id,
            merchant_id=shop.merchant_id,
            protocol=order.protocol,
            out_trade_no=order.out_trade_no,
            money_str=order.money,
            pay_type=order.pay_type,
            name=order.name,
            param=order.param,
            notify_url=order.notify_url,
            return_url=order.return_url,
            params_hash=params_hash,
            now=ctx.clock.now_ms(),
        )
        compat = store.get_compat_order(tx, made.id)
        assert compat is not None
        return _order_view(tx, compat, created=True)

    return await ctx.db.write(op)


async def find_shop_order(
    ctx: Context, shop: Shop, *, trade_no: str | None = None, out_trade_no: str | None = None
) -> ShopOrderDetail:
    """A compat order of this shop by our id (`trade_no`) or the shop's (`out_trade_no`)."""

    def op(tx: Tx) -> ShopOrderDetail:
        compat = None
        if trade_no:
            compat = store.get_compat_order(tx, trade_no)
        elif out_trade_no:
            compat = store.get_compat_order_by_ref(tx, shop.merchant_id, out_trade_no)
        else:
            raise BadRequest("send trade_no or out_trade_no", "missing_field")
        if compat is None or compat.merchant_id != shop.merchant_id:
            raise NotFound("no such order", "order_not_found")
        return _order_view(tx, compat)

    return await ctx.db.read(op)


async def close_shop_order(ctx: Context, shop: Shop, order_id: str) -> OrderDetail:
    await find_shop_order(ctx, shop, trade_no=order_id)
    return await close_order(ctx, shop.merchant_id, order_id)


async def monitor_state(ctx: Context, shop: Shop) -> bool:
    """For V免签's getState: whether a phone of the shop's merchant is online."""

    def op(tx: Tx) -> bool:
        return devices_store.merchant_has_online_device(tx, shop.merchant_id)

    return await ctx.db.read(op)
