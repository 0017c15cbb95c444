"""V免签 (vmq) protocol, pure: the create and notify signs, pay types and the exact `success` ack.

Create: `sign = md5(payId + param + type + price + key)`; notify: `md5(payId + param + type + price
+ reallyPrice + key)`, over the raw strings (`param` = "" when absent), lowercase hex. `price` is
the amount asked (as the shop sent it), `reallyPrice` the amount actually paid. Type 1 = WeChat,
2 = Alipay.
"""

from __future__ import annotations

import hashlib
import hmac

from bridge.core.epay import php_trim

__all__ = [
    "CHANNEL_TYPES",
    "PAY_TYPES",
    "create_sign",
    "create_verify",
    "is_ack",
    "notify_params",
    "notify_sign",
    "php_money",
]

PAY_TYPES = {"1": "wechat", "2": "alipay"}
CHANNEL_TYPES = {channel: pay_type for pay_type, channel in PAY_TYPES.items()}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def create_sign(pay_id: str, param: str, pay_type: str, price: str, key: str) -> str:
    return _md5(pay_id + param + pay_type + price + key)


def create_verify(pay_id: str, param: str, pay_type: str, price: str, key: str, sign: str) -> bool:
    return verify_concat([pay_id, param, pay_type, price], key, sign)


def verify_concat(parts: list[str], key: str, sign: str) -> bool:
    """Is `sign` md5(parts joined + key)? Constant time; lowercase hex as the clients send it."""
    expected = _md5("".join(parts) + key)
    return hmac.compare_digest(expected.encode(), sign.encode("utf-8", "replace"))


def notify_sign(pay_id: str, param: str, pay_type: str, price: str, really_price: str, key: str) -> str:
    return _md5(pay_id + param + pay_type + price + really_price + key)


def notify_params(*, pay_id: str, param: str, pay_type: str, price: str, really_price: str, key: str) -> dict[str, str]:
    """The signed notify query. `param` is echoed (trimmed: Laravel shops trim inputs) and, being
    part of the sign string even when empty, sent only when non-empty (absent reads as "")."""
    param = php_trim(param)
    out = {"payId": pay_id, "type": pay_type, "price": price, "reallyPrice": really_price}
    if param:
        out["param"] = param
    out["sign"] = notify_sign(pay_id, param, pay_type, price, really_price, key)
    return out


def is_ack(body: bytes) -> bool:
    """V免签 servers count a notify delivered only when the body is exactly `success` (we allow
    surrounding whitespace)."""
    return body.strip() == b"success"


def php_money(fen: int) -> str:
    """An amount as PHP prints a float: 1000 -> "10", 1050 -> "10.5", 999 -> "9.99"."""
    q, r = divmod(fen, 100)
    if r == 0:
        return str(q)
    return f"{q}.{r:02d}".rstrip("0")
