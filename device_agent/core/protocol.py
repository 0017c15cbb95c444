"""The device websocket protocol, agent side (docs/protocol.md, version 1). Pure.

Builders return plain dicts (`encode` turns one into the text of a frame); `decode_server_frame`
turns the text of a frame from the bridge into one of the frozen frame types below or raises
`ProtocolViolation`. Signing needs the private key and lives in `device_agent.identity`; this
module only defines the bytes that are signed (`auth_message`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from device_agent.core.notifications import Notification

__all__ = [
    "AUTH_PREFIX",
    "CLOSE_REASONS",
    "FINAL_CLOSE_CODES",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Ack",
    "AckStatus",
    "AuthOk",
    "Challenge",
    "HeartbeatAck",
    "ParsedLike",
    "ProtocolViolation",
    "ServerError",
    "ServerFrame",
    "auth_frame",
    "auth_message",
    "decode_server_frame",
    "encode",
    "heartbeat_frame",
    "report_frame",
]

PROTOCOL_VERSION = 1
AUTH_PREFIX = "paybridge-auth-v1"
MAX_FRAME = 64 * 1024
# Close codes after which reconnecting cannot help: the agent stops and says why.
FINAL_CLOSE_CODES: dict[int, str] = {
    4401: "the bridge refused this device's authentication (unknown device, wrong key or the phone's clock is off)",
    4403: "this device was revoked on the bridge; pair it again",
}
CLOSE_REASONS: dict[int, str] = {
    1000: "normal",
    1001: "going_away",
    1007: "invalid_utf8",
    1009: "frame_too_large",
    1011: "internal",
    4400: "bad_frame",
    4401: "auth_failed",
    4403: "device_revoked",
    4404: "unknown_type",
    4408: "auth_timeout",
    4409: "replaced",
    4429: "rate_limited",
}


class ProtocolViolation(ValueError):
    """A frame from the bridge that does not follow the protocol."""


class AckStatus(StrEnum):
    ACCEPTED = "accepted"  # committed as a new report; delete from the outbox
    DUPLICATE = "duplicate"  # already committed earlier; delete from the outbox
    REJECTED = "rejected"  # can never be accepted (malformed); delete and log


@dataclass(frozen=True, slots=True)
class Challenge:
    """`challenge`: the first frame of every connection."""

    nonce: str
    server_time: int
    v: int


@dataclass(frozen=True, slots=True)
class AuthOk:
    """`auth_ok`: authentication succeeded."""

    device_id: str
    heartbeat_interval: int
    server_time: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class Ack:
    """`ack` of one report; `event_id`/`seq` may be None only for a rejected malformed report."""

    event_id: str | None
    seq: int | None
    status: AckStatus
    payment_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """`heartbeat_ack`."""

    server_time: int


@dataclass(frozen=True, slots=True)
class ServerError:
    """`error`: sent by the bridge just before it closes the connection."""

    code: str
    message: str


ServerFrame = Challenge | AuthOk | Ack | HeartbeatAck | ServerError


class ParsedLike(Protocol):
    """What a report needs from a parse result (`device_agent.core.parsers.ParseResult`)."""

    @property
    def kind(self) -> str: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def amount_cents(self) -> int | None: ...
    @property
    def reason(self) -> str: ...


def encode(frame: dict[str, Any]) -> str:
    """The text of a frame: compact JSON, non-ASCII kept as is (CJK titles stay readable)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def auth_message(nonce: str, device_id: str, timestamp: int) -> bytes:
    """The UTF-8 bytes the device signs: `paybridge-auth-v1\\n{nonce}\\n{device_id}\\n{timestamp}`."""
    return f"{AUTH_PREFIX}\n{nonce}\n{device_id}\n{timestamp}".encode()


def auth_frame(*, device_id: str, timestamp: int, nonce: str, signature: str, agent_version: str) -> dict[str, Any]:
    """The `auth` frame answering a challenge; `signature` is base64 of the Ed25519 signature."""
    return {
        "type": "auth",
        "device_id": device_id,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": signature,
        "agent_version": agent_version,
    }


def report_frame(
    *, event_id: str, seq: int, observed_at: int, parsed: ParsedLike, notification: Notification
) -> dict[str, Any]:
    """A `report` frame for one recognised notification."""
    kind = str(parsed.kind)
    if kind not in ("payment", "unrecognised"):
        raise ValueError(f"only payment and unrecognised notifications are reported, not {kind!r}")
    if seq < 1:
        raise ValueError("seq starts at 1")
    return {
        "type": "report",
        "event_id": event_id,
        "seq": seq,
        "observed_at": observed_at,
        "parsed": {
            "kind": kind,
            "channel": parsed.channel,
            "amount_cents": parsed.amount_cents,
            "reason": parsed.reason,
        },
        "notification": notification.to_wire(),
    }


def heartbeat_frame(
    *,
    sent_at: int,
    agent_version: str,
    battery: dict[str, Any] | None,
    listener: dict[str, Any],
    outbox_depth: int,
    last_notification_at: dict[str, int],
) -> dict[str, Any]:
    """A `heartbeat` frame; `battery` is `{"level", "charging"}` or None when unknown.

    At most 32 packages are listed (the bridge's limit), the most recent first.
    """
    if battery is not None:
        battery = {"level": battery.get("level"), "charging": battery.get("charging")}
    latest = sorted(last_notification_at.items(), key=lambda kv: kv[1], reverse=True)[:32]
    return {
        "type": "heartbeat",
        "sent_at": sent_at,
        "agent_version": agent_version,
        "battery": battery,
        "listener": {"ok": listener.get("ok"), "source": listener.get("source"), "error": listener.get("error")},
        "outbox_depth": outbox_depth,
        "last_notification_at": dict(latest),
    }


def _int(obj: dict[str, Any], name: str) -> int:
    v = obj.get(name)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolViolation(f"{obj.get('type')}.{name} must be an integer")
    return v


def _str(obj: dict[str, Any], name: str) -> str:
    v = obj.get(name)
    if not isinstance(v, str):
        raise ProtocolViolation(f"{obj.get('type')}.{name} must be a string")
    return v


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    return None if obj.get(name) is None else _str(obj, name)


def _ack(obj: dict[str, Any]) -> Ack:
    try:
        status = AckStatus(str(obj.get("status")))
    except ValueError:
        raise ProtocolViolation(f"unknown ack status {obj.get('status')!r}") from None
    optional = status is AckStatus.REJECTED  # a report too broken to name itself
    event_id = _opt_str(obj, "event_id") if optional else _str(obj, "event_id")
    seq = None if optional and obj.get("seq") is None else _int(obj, "seq")
    return Ack(
        event_id=event_id,
        seq=seq,
        status=status,
        payment_id=_opt_str(obj, "payment_id"),
        reason=_opt_str(obj, "reason"),
    )


def decode_server_frame(text: str | bytes) -> ServerFrame:
    """Decode one frame from the bridge; raises ProtocolViolation when it is not valid."""
    if isinstance(text, bytes):
        raise ProtocolViolation("binary frames are not part of the protocol")
    if len(text) > MAX_FRAME:
        raise ProtocolViolation("frame over 64 KiB")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolViolation("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation("frame is not a JSON object")
    kind = obj.get("type")
    if kind == "challenge":
        nonce = _str(obj, "nonce")
        if not nonce or "\n" in nonce:
            raise ProtocolViolation("challenge.nonce must be a non-empty single-line string")
        return Challenge(nonce=nonce, server_time=_int(obj, "server_time"), v=_int(obj, "v"))
    if kind == "auth_ok":
        interval = _int(obj, "heartbeat_interval")
        if interval < 1:
            raise ProtocolViolation("auth_ok.heartbeat_interval must be positive")
        return AuthOk(
            device_id=_str(obj, "device_id"),
            heartbeat_interval=interval,
            server_time=_int(obj, "server_time"),
            last_seq=_int(obj, "last_seq"),
        )
    if kind == "ack":
        return _ack(obj)
    if kind == "heartbeat_ack":
        return HeartbeatAck(server_time=_int(obj, "server_time"))
    if kind == "error":
        return ServerError(code=_str(obj, "code"), message=_opt_str(obj, "message") or "")
    raise ProtocolViolation(f"unknown frame type {str(kind)[:32]!r}")
