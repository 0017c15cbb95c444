"""The agent's side of the device protocol: auth bytes, frame builders and server frame decoding."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from device_agent.core.notifications import Notification
from device_agent.core.protocol import (
    MAX_FRAME,
    Ack,
    AckStatus,
    AuthOk,
    Challenge,
    ProtocolViolation,
    ServerError,
    auth_message,
    decode_server_frame,
    encode,
    heartbeat_frame,
    report_frame,
)


@dataclass(frozen=True)
class Parsed:
    kind: str
    channel: str | None
    amount_cents: int | None
    reason: str


NOTE = Notification(package="com.tencent.mm", title="微信支付", text="微信支付收款1.00元", when=5, key="k")


def test_the_auth_message_is_the_documented_byte_string() -> None:
    """The signed bytes are prefix, nonce, device id and timestamp joined by newlines, UTF-8."""
    assert auth_message("bm9uY2U=", "dev_1", 1764206400456) == b"paybridge-auth-v1\nbm9uY2U=\ndev_1\n1764206400456"


def test_reports_carry_the_parse_result_and_the_raw_notification() -> None:
    """A report holds ids, the parsed fields and the wire form of the notification."""
    frame = report_frame(
        event_id="e", seq=3, observed_at=9, parsed=Parsed("payment", "wechat", 100, "wechat.x"), notification=NOTE
    )
    assert frame["parsed"] == {"kind": "payment", "channel": "wechat", "amount_cents": 100, "reason": "wechat.x"}
    assert frame["notification"] == NOTE.to_wire()
    assert (frame["type"], frame["event_id"], frame["seq"], frame["observed_at"]) == ("report", "e", 3, 9)


@pytest.mark.parametrize(("kind", "seq"), [("ignored", 1), ("payment", 0)])
def test_ignored_notifications_and_non_positive_seqs_never_become_reports(kind: str, seq: int) -> None:
    """Building a report for an ignored notification, or with seq < 1, raises ValueError."""
    with pytest.raises(ValueError):
        report_frame(event_id="e", seq=seq, observed_at=1, parsed=Parsed(kind, None, None, "r"), notification=NOTE)


def test_encoding_keeps_chinese_text_readable_and_compact() -> None:
    """Frames are compact JSON with non-ASCII characters kept as they are."""
    text = encode({"type": "x", "t": "收款"})
    assert text == '{"type":"x","t":"收款"}'


def test_heartbeats_list_at_most_32_apps_the_most_recent_first() -> None:
    """Only the 32 most recently heard-from packages go into a heartbeat (the bridge's limit)."""
    last = {f"pkg{i}": i for i in range(40)}
    frame = heartbeat_frame(
        sent_at=1,
        agent_version="v",
        battery={"level": 50, "charging": True, "extra": 1},
        listener={"ok": True, "source": "termux", "error": None},
        outbox_depth=2,
        last_notification_at=last,
    )
    assert set(frame["last_notification_at"]) == {f"pkg{i}" for i in range(8, 40)}
    assert frame["battery"] == {"level": 50, "charging": True}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "challenge", "v": 1, "nonce": "n", "server_time": 5}, Challenge("n", 5, 1)),
        (
            {"type": "auth_ok", "device_id": "d", "heartbeat_interval": 30, "server_time": 1, "last_seq": 0},
            AuthOk("d", 30, 1, 0),
        ),
        (
            {"type": "ack", "event_id": None, "seq": None, "status": "rejected", "reason": "bad"},
            Ack(None, None, AckStatus.REJECTED, None, "bad"),
        ),
        ({"type": "error", "code": "replaced"}, ServerError("replaced", "")),
    ],
)
def test_server_frames_decode_into_typed_values(obj: dict[str, object], expected: object) -> None:
    """Well-formed bridge frames decode to frozen values; a rejected ack may name no report."""
    assert decode_server_frame(json.dumps(obj)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1]",
        '{"type": "nope"}',
        '{"no": "type"}',
        '{"type": "challenge", "v": 1, "nonce": "a\\nb", "server_time": 1}',
        '{"type": "challenge", "v": 1, "nonce": 5, "server_time": 1}',
        '{"type": "auth_ok", "device_id": "d", "heartbeat_interval": 0, "server_time": 1, "last_seq": 0}',
        '{"type": "auth_ok", "device_id": "d", "heartbeat_interval": true, "server_time": 1, "last_seq": 0}',
        '{"type": "ack", "event_id": "e", "seq": 1, "status": "maybe"}',
        '{"type": "ack", "event_id": null, "seq": 1, "status": "accepted"}',
        '{"type": "heartbeat_ack"}',
    ],
)
def test_malformed_server_frames_are_protocol_violations(text: str) -> None:
    """Bad JSON, unknown types, a nonce with a newline, wrong field types and bad statuses are refused."""
    with pytest.raises(ProtocolViolation):
        decode_server_frame(text)


def test_binary_and_oversized_frames_are_protocol_violations() -> None:
    """Binary frames and frames over 64 KiB are refused before parsing."""
    with pytest.raises(ProtocolViolation):
        decode_server_frame(b"{}")
    with pytest.raises(ProtocolViolation):
        decode_server_frame('{"type": "error", "code": "x", "message": "' + "x" * MAX_FRAME + '"}')
