"""易支付 (epay) protocol, pure: the canonical string, MD5 (V1) and SHA256withRSA (V2) signs, money
strings, pay types, merchant order numbers and the notify a shop accepts.

The canonical string: every parameter except `sign` and `sign_type` whose value is not empty
(whitespace only counts as empty), sorted by name (ASCII), joined raw (not URL-encoded) as
`k=v` with `&`. V1 signs `md5(canonical + key)` in lowercase hex; V2 signs the same string with
RSA PKCS#1 v1.5 over SHA-256, base64, and carries a `timestamp` (seconds) within 300 s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bridge.core.amounts import parse_amount

__all__ = [
    "CHANNEL_TYPES",
    "KEY_ALPHABET",
    "KEY_LENGTH",
    "PAY_TYPES",
    "TIMESTAMP_TOLERANCE_S",
    "canonical",
    "channel_for_type",
    "check_out_trade_no",
    "is_ack",
    "is_compat_key",
    "load_private_key",
    "load_public_key",
    "md5_sign",
    "md5_verify",
    "money_fen",
    "notify_params",
    "php_trim",
    "private_key_b64",
    "public_key_b64",
    "rsa_sign",
    "rsa_verify",
    "timestamp_fresh",
    "with_query",
]

# The types a shop may ask for, and the channel each pays through; no type means "any".
PAY_TYPES = {"alipay": "alipay", "wxpay": "wechat", "bank": "unionpay"}
CHANNEL_TYPES = {channel: pay_type for pay_type, channel in PAY_TYPES.items()}
KEY_LENGTH = 32
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
TIMESTAMP_TOLERANCE_S = 300
MAX_OUT_TRADE_NO = 64
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9._|-]+")
_KEY = re.compile(r"[A-Za-z0-9]{32}")
_EXCLUDED = frozenset({"sign", "sign_type"})
PHP_WHITESPACE = " \t\n\r\x00\x0b"  # what PHP's trim() (and so Laravel's TrimStrings) removes


def php_trim(value: str) -> str:
    return value.strip(PHP_WHITESPACE)


def canonical(params: Mapping[str, str]) -> str:
    """The string both sides sign: non-empty parameters but sign/sign_type, sorted, `k=v&k=v`."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in _EXCLUDED and php_trim(params[k]) != "")


def md5_sign(params: Mapping[str, str], key: str) -> str:
    return hashlib.md5((canonical(params) + key).encode(), usedforsecurity=False).hexdigest()


def md5_verify(params: Mapping[str, str], key: str, sign: str) -> bool:
    """Does `sign` (lowercase hex, as every client sends it) match? Constant time."""
    return hmac.compare_digest(md5_sign(params, key).encode(), sign.encode("utf-8", "replace"))


def is_compat_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key from bare base64 PKCS#8 (the SDK's form) or PEM; ValueError otherwise."""
    key = serialization.load_der_private_key(_der(text, "PRIVATE KEY"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key from bare base64 SPKI (the SDK's form) or PEM; ValueError otherwise."""
    key = serialization.load_der_public_key(_der(text, "PUBLIC KEY"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key_size < 2048:
        raise ValueError("RSA keys must have at least 2048 bits")
    return key


def _der(text: str, label: str) -> bytes:
    body = text.strip()
    if body.startswith("-----BEGIN"):
        lines = [ln for ln in body.splitlines() if not ln.startswith("-----")]
        body = "".join(lines)
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{label.lower()} is not base64") from None


def private_key_b64(key: rsa.RSAPrivateKey) -> str:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return base64.b64encode(der).decode("ascii")


def public_key_b64(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def rsa_sign(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
    signature = key.sign(canonical(params).encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_verify(params: Mapping[str, str], key: rsa.RSAPublicKey, sign: str) -> bool:
    try:
        signature = base64.b64decode(sign, validate=True)
        key.verify(signature, canonical(params).encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def timestamp_fresh(timestamp: str, now_s: int, tolerance: int = TIMESTAMP_TOLERANCE_S) -> bool:
    """A V2 `timestamp` (decimal seconds) within `tolerance` of now."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    return abs(now_s - int(timestamp)) <= tolerance


def money_fen(money: str) -> int:
    """The fen of a money string as shops send it (`10`, `10.5`, `10.00`); ValueError otherwise."""
    return parse_amount(money)


def channel_for_type(pay_type: str | None) -> str:
    """`alipay` -> alipay, `wxpay` -> wechat, `bank` -> unionpay, none -> any; ValueError otherwise."""
    if pay_type is None or pay_type == "":
        return "any"
    channel = PAY_TYPES.get(pay_type)
    if channel is None:
        raise ValueError(
            f"unsupported type {pay_type[:32]!r}: use alipay, wxpay or bank (or none to let the payer pick)"
        )
    return channel


def check_out_trade_no(value: str) -> str:
    if not value:
        raise ValueError("out_trade_no is required")
    if len(value) > MAX_OUT_TRADE_NO or _OUT_TRADE_NO.fullmatch(value) is None:
        raise ValueError(f"out_trade_no must be 1..{MAX_OUT_TRADE_NO} characters of A-Z a-z 0-9 . _ | -")
    return value


def notify_params(
    *,
    pid: int,
    trade_no: str,
    out_trade_no: str,
    pay_type: str,
    name: str,
    money: str,
    param: str,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The unsigned fields of a paid notify. Values are trimmed (Laravel shops trim every input before
    verifying) and empty ones left out (v2board/Xboard sign every field received, empty ones too)."""
    fields = {
        "pid": str(pid),
        "trade_no": trade_no,
        "out_trade_no": out_trade_no,
        "type": pay_type,
        "name": php_trim(name),
        "money": money,
        "trade_status": "TRADE_SUCCESS",
        "param": php_trim(param),
    }
    if timestamp is not None:
        fields["timestamp"] = str(timestamp)
    return {k: v for k, v in fields.items() if php_trim(v) != ""}


def with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` + `?` (or `&` when it has a query) + the URL-encoded params, before any `#fragment`."""
    base, hash_, fragment = url.partition("#")
    query = urlencode(params, quote_via=quote, safe="")
    joiner = "" if base.endswith(("?", "&")) else ("&" if "?" in base else "?")
    return f"{base}{joiner}{query}{hash_}{fragment}"


def is_ack(body: bytes) -> bool:
    """A shop acknowledges an 易支付 notify with a body containing `success`."""
    return b"success" in body
