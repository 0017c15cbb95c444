"""Standard Webhooks signing (pure), checked against the reference `standardwebhooks` verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bridge.core.signing import new_secret, secret_key, sign, signature_header, verify

SECRET = new_secret(bytes(range(24)))
OTHER = new_secret(bytes(range(100, 124)))
NOW = 1_764_205_323


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_secret_format() -> None:
    """Secrets are whsec_ + base64 of the random bytes; too little randomness or a foreign prefix is refused."""
    assert "whsec_" + base64.b64encode(bytes(range(24))).decode() == SECRET
    assert secret_key(SECRET) == bytes(range(24))
    with pytest.raises(ValueError):
        new_secret(b"short")
    with pytest.raises(ValueError):
        secret_key("sk_" + SECRET[6:])


def test_signature_is_the_documented_hmac() -> None:
    """v1,<base64 HMAC-SHA256 of "id.timestamp.body">, keyed with the decoded secret (what docs/webhooks.md shows)."""
    body = b'{"id":"evt_1","type":"order.paid"}'
    digest = hmac.new(bytes(range(24)), b"evt_1.%d." % NOW + body, hashlib.sha256).digest()
    assert sign(SECRET, "evt_1", NOW, body) == "v1," + base64.b64encode(digest).decode()


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30))


@given(
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8),
    st.text(min_size=1, max_size=40, alphabet="abcdefghijklmnopqrstuvwxyz_0123456789"),
)
def test_reference_verifier_accepts_our_signatures(payload: dict[str, object], msg_id: str) -> None:
    """The standardwebhooks package verifies every JSON body we sign, non-ASCII text included."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    ts = int(time.time())
    assert Webhook(SECRET).verify(body, _headers(msg_id, ts, sign(SECRET, msg_id, ts, body))) == payload


def test_rotation_header_verifies_with_either_secret() -> None:
    """Two live secrets give two space-separated signatures; each secret alone verifies, a third does not."""
    ts = int(time.time())
    body = b'{"id":"evt_2"}'
    header = signature_header([SECRET, OTHER], "evt_2", ts, body)
    assert len(header.split(" ")) == 2
    for secret in (SECRET, OTHER):
        Webhook(secret).verify(body, _headers("evt_2", ts, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret(b"\x07" * 24)).verify(body, _headers("evt_2", ts, header))


def test_verify_rejects_tampering_and_old_timestamps() -> None:
    """Our own verify() refuses a changed body, another id and a timestamp outside the tolerance."""
    body = b'{"a":1}'
    header = sign(SECRET, "evt_3", NOW, body)
    assert verify(SECRET, "evt_3", NOW, body, header, now=NOW + 10)
    assert not verify(SECRET, "evt_3", NOW, b'{"a":2}', header, now=NOW)
    assert not verify(SECRET, "evt_4", NOW, body, header, now=NOW)
    assert not verify(SECRET, "evt_3", NOW, body, header, now=NOW + 301)
    assert not verify(OTHER, "evt_3", NOW, body, header, now=NOW)


def test_secret_strength_and_strict_base64() -> None:
    """16 random bytes are the minimum; a secret with characters outside base64 is refused, not half-read."""
    assert new_secret(bytes(16)).startswith("whsec_")
    with pytest.raises(ValueError, match=r"^a webhook secret needs at least 128 bits of randomness$"):
        new_secret(bytes(15))
    with pytest.raises(ValueError, match=r"^webhook secrets start with whsec_$"):
        secret_key("wh_" + base64.b64encode(bytes(24)).decode())
    good = base64.b64encode(bytes(range(24))).decode()
    assert secret_key("whsec_" + good) == bytes(range(24))
    for bad in (good[:8] + "!" + good[8:], good[:8] + " " + good[8:], good + "\n", "AAAA$AAA"):
        with pytest.raises(ValueError):
            secret_key("whsec_" + bad)


@pytest.mark.parametrize(
    ("skew", "ok"), [(0, True), (299, True), (300, True), (301, False), (-300, True), (-301, False)]
)
def test_verify_tolerance_edges(skew: int, ok: bool) -> None:
    """A signature exactly 300 s old (or ahead) verifies; one second more does not."""
    secret = new_secret(bytes(range(24)))
    header = signature_header([secret], "msg_1", 1_000_000, b"{}")
    assert verify(secret, "msg_1", 1_000_000, b"{}", header, now=1_000_000 + skew) is ok
