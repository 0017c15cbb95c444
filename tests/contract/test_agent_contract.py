"""Contract, agent half: the agent's encoders reproduce the documented frames and its decoders
accept the bridge's. The fixtures are the examples of docs/protocol.md (see fixtures/README.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.core.notifications import Notification
from device_agent.core.parsers import ParseKind, ParseResult
from device_agent.core.protocol import (
    Ack,
    AckStatus,
    AuthOk,
    Challenge,
    HeartbeatAck,
    ServerError,
    auth_frame,
    decode_server_frame,
    encode,
    heartbeat_frame,
    report_frame,
)
from device_agent.identity import public_key_b64, sign_auth

FIXTURES = Path(__file__).parent / "fixtures"
SEED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def frames(name: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    assert isinstance(data, list) and data, name
    return data


def test_every_documented_frame_type_has_a_fixture() -> None:
    """Each frame type of the protocol document has its fixture file with frames of that type."""
    for kind in ("challenge", "auth", "auth_ok", "report", "ack", "heartbeat", "heartbeat_ack", "error"):
        assert all(f["type"] == kind for f in frames(kind)), kind


def test_the_auth_builder_and_signer_reproduce_the_auth_fixture() -> None:
    """Signing the fixture's challenge with the seed key yields the fixture's auth frame byte for byte."""
    (expected,) = frames("auth")
    (challenge,) = frames("challenge")
    assert expected["nonce"] == challenge["nonce"]
    signature = sign_auth(
        SEED_KEY, nonce=challenge["nonce"], device_id=expected["device_id"], timestamp=expected["timestamp"]
    )
    built = auth_frame(
        device_id=expected["device_id"],
        timestamp=expected["timestamp"],
        nonce=challenge["nonce"],
        signature=signature,
        agent_version=expected["agent_version"],
    )
    assert built == expected


def test_the_pairing_body_carries_the_raw_public_key_in_base64() -> None:
    """The pair request's public key is base64 of the seed key's 32 raw public bytes."""
    (body,) = frames("pair_request")
    assert body["public_key"] == public_key_b64(SEED_KEY)
    assert len(base64.b64decode(body["public_key"])) == 32


@pytest.mark.parametrize("expected", frames("report"), ids=lambda f: f["parsed"]["kind"])
def test_the_report_builder_reproduces_the_report_fixtures(expected: dict[str, Any]) -> None:
    """A report built from the fixture's parse result and notification equals the fixture."""
    n = expected["notification"]
    p = expected["parsed"]
    built = report_frame(
        event_id=expected["event_id"],
        seq=expected["seq"],
        observed_at=expected["observed_at"],
        parsed=ParseResult(ParseKind(p["kind"]), p["channel"], p["amount_cents"], p["reason"]),
        notification=Notification(package=n["package"], title=n["title"], text=n["text"], when=n["when"], key=n["key"]),
    )
    assert built == expected
    assert json.loads(encode(built)) == expected  # the wire text decodes to the same shape


@pytest.mark.parametrize("expected", frames("heartbeat"), ids=["battery", "no_battery"])
def test_the_heartbeat_builder_reproduces_the_heartbeat_fixtures(expected: dict[str, Any]) -> None:
    """A heartbeat built from the fixture's fields equals the fixture."""
    built = heartbeat_frame(
        sent_at=expected["sent_at"],
        agent_version=expected["agent_version"],
        battery=expected["battery"],
        listener=expected["listener"],
        outbox_depth=expected["outbox_depth"],
        last_notification_at=expected["last_notification_at"],
    )
    assert json.loads(encode(built)) == expected


def test_the_agent_decodes_the_bridge_frames() -> None:
    """Every bridge → device fixture decodes into the matching typed frame with the same values."""
    (c,) = frames("challenge")
    assert decode_server_frame(json.dumps(c)) == Challenge(nonce=c["nonce"], server_time=c["server_time"], v=1)
    (ok,) = frames("auth_ok")
    assert decode_server_frame(json.dumps(ok)) == AuthOk(ok["device_id"], 30, ok["server_time"], 41)
    acks = [decode_server_frame(json.dumps(a)) for a in frames("ack")]
    assert all(isinstance(a, Ack) for a in acks)
    assert [a.status for a in acks if isinstance(a, Ack)] == [
        AckStatus.ACCEPTED,
        AckStatus.DUPLICATE,
        AckStatus.REJECTED,
    ]
    (hb,) = frames("heartbeat_ack")
    assert decode_server_frame(json.dumps(hb)) == HeartbeatAck(hb["server_time"])
    (err,) = frames("error")
    assert decode_server_frame(json.dumps(err)) == ServerError("auth_failed", "bad signature")


def test_the_pairing_response_has_what_the_agent_stores() -> None:
    """The documented pairing response has the device id and heartbeat interval the agent keeps."""
    (answer,) = frames("pair_response")
    assert isinstance(answer["device_id"], str) and isinstance(answer["heartbeat_interval"], int)
