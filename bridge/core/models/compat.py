"""The shop gateways' (易支付 / V免签) records: a merchant's credentials and a shop's view of an order."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import MerchantId, OrderId
from bridge.core.models.order import OrderDetail

__all__ = ["CompatOrder", "Shop", "ShopOrderDetail"]


@dataclass(frozen=True, slots=True)
class Shop:
    """A merchant as the shop gateways know it (secrets opened)."""

    merchant_id: MerchantId
    pid: int  # the merchant number the shop software is configured with (>= 1000)
    key: str  # the compat key: MD5 signs and V免签
    platform_private_key: str  # base64 PKCS#8: signs V2 responses and notifies
    platform_public_key: str  # base64 SPKI
    merchant_public_key: str | None  # base64 SPKI: verifies V2 requests (None: not registered)


@dataclass(frozen=True, slots=True)
class CompatOrder:
    """The strings a shop sent for an order, exactly as sent (echoed in its notifies)."""

    order_id: OrderId
    merchant_id: MerchantId
    protocol: str  # epay1, epay2 or vmq
    out_trade_no: str
    money_str: str
    type: str | None  # the shop's pay type (None: the payer picks)
    name: str
    param: str
    notify_url: str | None
    return_url: str | None
    params_hash: str
    created_at: int  # Unix ms


@dataclass(frozen=True, slots=True)
class ShopOrderDetail:
    """A shop gateway order: ours (with its account) and the shop's strings; `created` by this request."""

    detail: OrderDetail
    compat: CompatOrder
    created: bool = False
