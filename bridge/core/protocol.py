"""The device websocket protocol, bridge side (docs/protocol.md). Pure: decode, validate, build.

Decoders raise `ProtocolError(code, message)`; the websocket handler maps the code to a close
code with `CLOSE_CODES`. A malformed *report* after auth is not a protocol error: it is acked
`rejected` (see `decode_report`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bridge.core import codec

__all__ = [
    "AUTH_PREFIX",
    "CLOSE_CODES",
    "MAX_FRAME",
    "REPORT_CHANNELS",
    "Auth",
    "Heartbeat",
    "ProtocolError",
    "Report",
    "auth_message",
    "decode_auth",
    "decode_frame",
    "decode_heartbeat",
    "decode_public_key",
    "decode_report",
    "verify_auth",
]

AUTH_PREFIX = "paybridge-auth-v1"
MAX_FRAME = 64 * 1024
CLOCK_TOLERANCE_MS = 5 * 60 * 1000
REPORT_CHANNELS = frozenset({"alipay", "wechat", "unionpay", "cashbar-alipay", "cashbar-wechat", "cashbar", "bank"})
MAX_TEXT = 4096

CLOSE_CODES: dict[str, int] = {
    "frame_too_large": 1009,
    "bad_frame": 4400,
    "auth_failed": 4401,
    "device_revoked": 4403,
    "unknown_type": 4404,
    "auth_timeout": 4408,
    "replaced": 4409,
    "rate_limited": 4429,
    "internal": 1011,
    "going_away": 1001,
}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Auth:
    device_id: str
    timestamp: int
    nonce: str
    signature: bytes
    agent_version: str


@dataclass(frozen=True, slots=True)
class Report:
    event_id: str
    seq: int
    observed_at: int
    kind: str  # "payment" | "unrecognised"
    channel: str | None
    amount_cents: int | None
    parse_reason: str
    package: str
    title: str | None
    text: str | None
    when: int
    key: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    sent_at: int
    body: dict[str, Any]  # validated, size-bounded copy kept as the device's latest heartbeat
    listener_ok: bool
    battery_level: int | None
    charging: bool | None
    outbox_depth: int


def decode_frame(data: str) -> dict[str, Any]:
    """Parse one text frame into a JSON object with a string `type`."""
    if len(data) > MAX_FRAME:
        raise ProtocolError("frame_too_large", "frames are limited to 64 KiB")
    try:
        obj = codec.loads(data)
    except (ValueError, RecursionError) as e:
        raise ProtocolError("bad_frame", f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_frame", "a frame is a JSON object")
    if not isinstance(obj.get("type"), str):
        raise ProtocolError("bad_frame", "a frame needs a string 'type'")
    return obj


def auth_message(nonce: str, device_id: str, timestamp: int) -> bytes:
    """The bytes a device signs to authenticate."""
    return f"{AUTH_PREFIX}\n{nonce}\n{device_id}\n{timestamp}".encode()


def _int(obj: dict[str, Any], name: str, *, minimum: int = 0, maximum: int = 2**53) -> int:
    v = obj.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or not (minimum <= v <= maximum):
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}]")
    return v


def _str(obj: dict[str, Any], name: str, *, max_len: int = 256, optional: bool = False) -> str | None:
    v = obj.get(name)
    if v is None and optional:
        return None
    if not isinstance(v, str) or len(v) > max_len:
        raise ValueError(f"{name} must be a string of at most {max_len} characters")
    return v


def decode_auth(obj: dict[str, Any]) -> Auth:
    if obj.get("type") != "auth":
        raise ProtocolError("auth_failed", "authenticate first")
    try:
        device_id = _str(obj, "device_id", max_len=64)
        nonce = _str(obj, "nonce", max_len=128)
        sig_text = _str(obj, "signature", max_len=256)
        ts = _int(obj, "timestamp")
        version = _str(obj, "agent_version", max_len=64, optional=True) or "unknown"
        assert device_id is not None and nonce is not None and sig_text is not None
        signature = base64.b64decode(sig_text, validate=True)
    except (ValueError, binascii.Error) as e:
        raise ProtocolError("auth_failed", f"bad auth frame: {e}") from None
    return Auth(device_id=device_id, timestamp=ts, nonce=nonce, signature=signature, agent_version=version)


def decode_public_key(text: str) -> Ed25519PublicKey:
    """A device's public key: base64 of the 32 raw Ed25519 bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public_key must be base64") from None
    if len(raw) != 32:
        raise ValueError("public_key must be 32 raw Ed25519 bytes, base64-encoded")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_auth(auth: Auth, *, expected_nonce: str, public_key: str, now_ms: int) -> None:
    """Raise ProtocolError('auth_failed') unless the auth frame is valid for this connection."""
    if not hmac.compare_digest(auth.nonce.encode(), expected_nonce.encode()):
        raise ProtocolError("auth_failed", "wrong nonce")
    if abs(now_ms - auth.timestamp) > CLOCK_TOLERANCE_MS:
        raise ProtocolError("auth_failed", "clock skew over 5 minutes; fix the phone's clock")
    try:
        decode_public_key(public_key).verify(auth.signature, auth_message(auth.nonce, auth.device_id, auth.timestamp))
    except (InvalidSignature, ValueError):
        raise ProtocolError("auth_failed", "bad signature") from None


def decode_report(obj: dict[str, Any]) -> Report:
    """Validate a report frame; raise ValueError with the reason to ack it `rejected`.

    The event id and seq are checked first so that a rejection can still name them.
    """
    event_id = _str(obj, "event_id", max_len=64)
    assert event_id is not None
    try:
        # One spelling per id: "{…}", upper case, "urn:uuid:" and unhyphenated forms name the same
        # report, so they must dedupe as one.
        event_id = str(uuid.UUID(event_id))
    except ValueError:
        raise ValueError("event_id must be a UUID") from None
    seq = _int(obj, "seq", minimum=0)
    observed_at = _int(obj, "observed_at")
    parsed = obj.get("parsed")
    note = obj.get("notification")
    if not isinstance(parsed, dict) or not isinstance(note, dict):
        raise ValueError("parsed and notification must be objects")
    kind = parsed.get("kind")
    if kind not in ("payment", "unrecognised"):
        raise ValueError("parsed.kind must be 'payment' or 'unrecognised'")
    channel = parsed.get("channel")
    if channel is not None and channel not in REPORT_CHANNELS:
        raise ValueError(f"parsed.channel must be one of {sorted(REPORT_CHANNELS)} or null")
    amount = parsed.get("amount_cents")
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int) or not (1 <= amount <= 100_000_000_00)
    ):
        raise ValueError("parsed.amount_cents must be a positive integer (fen) or null")
    if kind == "unrecognised":
        amount = None
    reason = parsed.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 128:
        raise ValueError("parsed.reason must be a short string")
    package = _str(note, "package", max_len=256)
    assert package is not None
    title = _str(note, "title", max_len=MAX_TEXT, optional=True)
    text = _str(note, "text", max_len=MAX_TEXT, optional=True)
    when = _int(note, "when")
    key = _str(note, "key", max_len=512)
    assert key is not None
    return Report(
        event_id=event_id,
        seq=seq,
        observed_at=observed_at,
        kind=kind,
        channel=channel,
        amount_cents=amount,
        parse_reason=reason,
        package=package,
        title=title,
        text=text,
        when=when,
        key=key,
    )


def decode_heartbeat(obj: dict[str, Any]) -> Heartbeat:
    """Validate a heartbeat; unknown extra fields are dropped, sizes bounded."""
    try:
        sent_at = _int(obj, "sent_at")
        version = _str(obj, "agent_version", max_len=64, optional=True)
        depth = _int(obj, "outbox_depth") if "outbox_depth" in obj else 0
        battery = obj.get("battery")
        level: int | None = None
        charging: bool | None = None
        if battery is not None:
            if not isinstance(battery, dict):
                raise ValueError("battery must be an object or null")
            level = _int(battery, "level", maximum=100)
            c = battery.get("charging")
            if not isinstance(c, bool):
                raise ValueError("battery.charging must be a boolean")
            charging = c
        listener = obj.get("listener")
        if not isinstance(listener, dict) or not isinstance(listener.get("ok"), bool):
            raise ValueError("listener must be an object with a boolean 'ok'")
        err = listener.get("error")
        if err is not None and (not isinstance(err, str) or len(err) > 256):
            raise ValueError("listener.error must be a short string or null")
        src = listener.get("source")
        if src is not None and (not isinstance(src, str) or len(src) > 32):
            raise ValueError("listener.source must be a short string")
        last = obj.get("last_notification_at", {})
        if not isinstance(last, dict) or len(last) > 32:
            raise ValueError("last_notification_at must be an object of at most 32 apps")
        for k, v in last.items():
            if len(k) > 256 or isinstance(v, bool) or not isinstance(v, int):
                raise ValueError("last_notification_at maps package names to Unix ms")
    except ValueError as e:
        raise ProtocolError("bad_frame", f"bad heartbeat: {e}") from None
    body: dict[str, Any] = {
        "sent_at": sent_at,
        "agent_version": version,
        "battery": None if level is None else {"level": level, "charging": charging},
        "listener": {"ok": listener["ok"], "source": src, "error": err},
        "outbox_depth": depth,
        "last_notification_at": dict(last),
    }
    return Heartbeat(
        sent_at=sent_at,
        body=body,
        listener_ok=bool(listener["ok"]),
        battery_level=level,
        charging=charging,
        outbox_depth=depth,
    )
