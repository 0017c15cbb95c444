"""The bridge half of the wire contract: it accepts every device frame of the shared fixtures, and the
frames it sends have the fields the fixtures (and so the agent) expect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.core.protocol import (
    decode_auth,
    decode_frame,
    decode_heartbeat,
    decode_public_key,
    decode_report,
    verify_auth,
)
from tests.harness import RunningBridge, TestDevice

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> list[dict[str, Any]]:
    return list(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


@pytest.mark.parametrize("frame", load("report"), ids=lambda f: f["parsed"]["kind"])
def test_bridge_decodes_fixture_reports(frame: dict[str, Any]) -> None:
    """Every report fixture passes the bridge's validation unchanged."""
    report = decode_report(decode_frame(json.dumps(frame)))
    assert (report.event_id, report.seq, report.kind) == (frame["event_id"], frame["seq"], frame["parsed"]["kind"])
    assert report.amount_cents == frame["parsed"]["amount_cents"]


def test_bridge_verifies_the_fixture_auth_signature() -> None:
    """The fixture auth frame's signature verifies against the fixture pairing request's public key."""
    auth = decode_auth(load("auth")[0])
    public_key = load("pair_request")[0]["public_key"]
    decode_public_key(public_key)
    verify_auth(auth, expected_nonce=load("challenge")[0]["nonce"], public_key=public_key, now_ms=auth.timestamp)


def test_bridge_decodes_fixture_heartbeats() -> None:
    """Every heartbeat fixture is accepted with its battery and listener state."""
    for frame in load("heartbeat"):
        hb = decode_heartbeat(frame)
        assert hb.listener_ok == frame["listener"]["ok"]


async def test_bridge_frames_match_the_fixture_shapes(bridge: RunningBridge) -> None:
    """challenge, auth_ok, ack and heartbeat_ack from a live bridge carry the fixtures' keys."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    challenge = await device.open()
    assert set(load("challenge")[0]) <= set(challenge)
    await device.send(device.auth_frame(challenge["nonce"]))
    auth_ok = await device.recv()
    assert set(load("auth_ok")[0]) <= set(auth_ok)
    ack = await device.pay(100)
    assert set(load("ack")[0]) <= set(ack)
    hb_ack = await device.heartbeat()
    assert set(load("heartbeat_ack")[0]) <= set(hb_ack)
    await device.close()


async def test_pairing_shapes(bridge: RunningBridge) -> None:
    """The pairing request fixture's fields are accepted and the response has the fixture's keys."""
    m = await bridge.merchant()
    _, code = await bridge.call("POST", "/v1/pairing-codes", token=m["api_key"])
    body = dict(load("pair_request")[0])
    body["code"] = code["code"]
    body["public_key"] = TestDevice(bridge.ws_url).public_key_b64
    status, out = await bridge.call("POST", "/v1/devices/pair", json_body=body)
    assert status == 201 and set(load("pair_response")[0]) <= set(out)
