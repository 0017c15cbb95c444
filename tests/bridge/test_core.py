"""Table tests of the pure core: amounts, candidates, matching, device status, tokens, protocol, rate limits."""

from __future__ import annotations

import base64
import contextlib
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.amounts import candidate_amounts, check_fen, format_fen, parse_amount
from bridge.core.backoff import DEFAULT_SCHEDULE, RetryPolicy, delay_for
from bridge.core.matching import Candidate, MatchRules, channel_family, choose
from bridge.core.protocol import (
    ProtocolError,
    auth_message,
    decode_auth,
    decode_frame,
    decode_heartbeat,
    decode_report,
    verify_auth,
)
from bridge.core.ratelimit import RateLimiter
from bridge.core.states import DeliveryStatus, IllegalTransition, OrderStatus, PaymentStatus, sources, transition
from bridge.core.status import HealthRules, device_status
from bridge.core.tokens import normalise_pairing_code, pairing_code_from_bytes


@pytest.mark.parametrize(
    ("text", "fen"),
    [("10.00", 1000), ("10", 1000), ("9.9", 990), ("0.01", 1), ("1430.00", 143000), ("0.10", 10)],
)
def test_parse_amount(text: str, fen: int) -> None:
    """Yuan strings become integer fen exactly."""
    assert parse_amount(text) == fen


@pytest.mark.parametrize("text", ["", "1.001", "-1", "+1", "1e3", "1,000.00", " 1", "0", "0.00", "01.00", "abc"])
def test_parse_amount_rejects(text: str) -> None:
    """Anything but a plain positive amount with at most two decimals is refused."""
    with pytest.raises(ValueError):
        parse_amount(text)


@given(st.integers(min_value=1, max_value=10**10))
def test_format_parse_round_trip(fen: int) -> None:
    """format_fen and parse_amount are inverse on every valid amount."""
    assert parse_amount(format_fen(fen)) == fen


def test_check_fen_rejects_bools_and_zero() -> None:
    """True is not 1 fen, and zero is not an amount."""
    for bad in (True, 0, -5):
        with pytest.raises(ValueError):
            check_fen(bad)


def test_candidates() -> None:
    """Candidates step in the configured direction and never go below one fen."""
    assert candidate_amounts(1000, steps=3, step=1, direction="down") == [1000, 999, 998, 997]
    assert candidate_amounts(1000, steps=2, step=1, direction="up") == [1000, 1001, 1002]
    assert candidate_amounts(2, steps=5, step=1, direction="down") == [2, 1]


RULES = MatchRules(clock_skew_ms=1000, late_grace_ms=5000)


def _c(
    order_id: str, channel: str = "alipay", status: str = "pending", created: int = 0, expires: int = 100_000
) -> Candidate:
    return Candidate(order_id, channel, status, created, expires)


def test_match_one_pending() -> None:
    """One fitting pending order is matched on time."""
    d = choose([_c("o1")], observed_at=50_000, report_channel="alipay", rules=RULES)
    assert (d.order_id, d.late, d.reason) == ("o1", False, "matched")


def test_match_respects_channel_and_window() -> None:
    """A WeChat order does not take an Alipay payment; a payment long before creation does not match."""
    assert choose([_c("o1", "wechat")], observed_at=5, report_channel="alipay", rules=RULES).reason == "no_order"
    early = choose([_c("o1", created=10_000)], observed_at=8_000, report_channel="alipay", rules=RULES)
    assert early.reason == "no_order"
    assert choose([_c("o1", created=10_000)], observed_at=9_500, report_channel="alipay", rules=RULES).order_id == "o1"


def test_match_any_and_cashbar() -> None:
    """An `any` order takes every channel; a 收钱吧 WeChat relay pays a WeChat order."""
    assert choose([_c("o1", "any")], observed_at=5, report_channel="wechat", rules=RULES).order_id == "o1"
    assert choose([_c("o1", "wechat")], observed_at=5, report_channel="cashbar-wechat", rules=RULES).order_id == "o1"
    assert channel_family("bank") == "unionpay" and channel_family("cashbar") is None


def test_match_late_and_ambiguous() -> None:
    """Within the grace period after expiry the match is late; two equal candidates are ambiguous."""
    d = choose([_c("o1", status="expired", expires=100)], observed_at=3000, report_channel="alipay", rules=RULES)
    assert (d.order_id, d.late) == ("o1", True)
    d = choose([_c("o1", status="expired", expires=100)], observed_at=9000, report_channel="alipay", rules=RULES)
    assert d.order_id is None
    d = choose([_c("o1"), _c("o2")], observed_at=5, report_channel="alipay", rules=RULES)
    assert (d.order_id, d.reason) == (None, "ambiguous")
    no_late = MatchRules(clock_skew_ms=1000, late_grace_ms=5000, accept_late=False)
    d = choose([_c("o1", status="expired", expires=100)], observed_at=3000, report_channel="alipay", rules=no_late)
    assert d.order_id is None


def test_on_time_beats_late() -> None:
    """A pending order on time wins over an expired one of the same amount."""
    d = choose(
        [_c("old", status="expired", expires=100), _c("new", created=200)],
        observed_at=300,
        report_channel="alipay",
        rules=RULES,
    )
    assert (d.order_id, d.late) == ("new", False)


@pytest.mark.parametrize(
    ("kw", "status", "reasons"),
    [
        ({"connected": False}, "offline", ["disconnected"]),
        ({"last_heartbeat_at": 0, "now": 100_000}, "offline", ["no_heartbeat"]),
        ({}, "online", []),
        ({"listener_ok": False}, "degraded", ["listener_not_working"]),
        ({"battery_level": 10, "charging": False}, "degraded", ["battery_low"]),
        ({"battery_level": 10, "charging": True}, "online", []),
        ({"outbox_depth": 51}, "degraded", ["outbox_backlog"]),
    ],
)
def test_device_status(kw: dict[str, object], status: str, reasons: list[str]) -> None:
    """Offline beats degraded; degraded lists every reason that holds."""
    base: dict[str, object] = {
        "connected": True,
        "last_heartbeat_at": 1000,
        "listener_ok": True,
        "battery_level": 80,
        "charging": False,
        "outbox_depth": 0,
        "now": 2000,
    }
    base.update(kw)
    got = device_status(rules=HealthRules(), **base)  # type: ignore[arg-type]
    assert (got[0].value, got[1]) == (status, reasons)


def test_transitions() -> None:
    """Paid orders stay paid; expired orders may still be paid late; unmatched payments resolve once."""
    assert transition(OrderStatus.EXPIRED, OrderStatus.PAID) is OrderStatus.PAID
    with pytest.raises(IllegalTransition):
        transition(OrderStatus.PAID, OrderStatus.CLOSED)
    with pytest.raises(IllegalTransition):
        transition(PaymentStatus.IGNORED, PaymentStatus.MATCHED)


Status = OrderStatus | PaymentStatus | DeliveryStatus


@pytest.mark.parametrize("target", [*OrderStatus, *PaymentStatus, *DeliveryStatus])
def test_sources_are_exactly_the_allowed_moves(target: Status) -> None:
    """The store's status guard for a move lists exactly the statuses `transition()` lets reach it."""
    allowed = [s for s in type(target) if _allowed(s, target)]
    assert list(sources(target)) == allowed  # type: ignore[type-var]


def test_sources_spot_checks() -> None:
    """Only pending or expired orders can be paid; nothing returns to pending; any ended delivery is re-queued."""
    assert sources(OrderStatus.PAID) == (OrderStatus.PENDING, OrderStatus.EXPIRED)
    assert sources(OrderStatus.CLOSED) == (OrderStatus.PENDING,)
    assert sources(OrderStatus.PENDING) == ()
    ended = {DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.DISABLED}
    assert set(sources(DeliveryStatus.PENDING)) == ended


def _allowed(current: Status, target: Status) -> bool:
    try:
        transition(current, target)  # type: ignore[type-var]
    except IllegalTransition:
        return False
    return True


def test_backoff_schedule() -> None:
    """Delays follow the schedule within ±20 %, honour Retry-After, and end after the last attempt."""
    rng = random.Random(1)
    policy = RetryPolicy()
    for attempt, base in enumerate(DEFAULT_SCHEDULE, start=1):
        d = delay_for(attempt, policy, rng)
        assert d is not None and base * 0.8 <= d <= base * 1.2
    assert delay_for(len(DEFAULT_SCHEDULE) + 1, policy, rng) is None
    assert delay_for(2, policy, rng, retry_after=120) == 120
    assert delay_for(2, policy, rng, retry_after=10**9) == policy.max_retry_after


def test_pairing_codes() -> None:
    """Codes are 8 Crockford characters; typing variants normalise to the same code."""
    code = pairing_code_from_bytes(bytes(range(8)))
    assert len(code) == 8 and set(code) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert normalise_pairing_code("7kq2-m9xo") == "7KQ2M9X0"
    with pytest.raises(ValueError):
        normalise_pairing_code("!!!")


def test_auth_verification() -> None:
    """A correct signature verifies; a wrong nonce, a skewed clock or a wrong key fail."""
    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    sig = base64.b64encode(key.sign(auth_message("n1", "dev_1", 1000))).decode()
    auth = decode_auth({"type": "auth", "device_id": "dev_1", "timestamp": 1000, "nonce": "n1", "signature": sig})
    verify_auth(auth, expected_nonce="n1", public_key=pub, now_ms=2000)
    for kwargs in ({"expected_nonce": "n2", "now_ms": 2000}, {"expected_nonce": "n1", "now_ms": 10**9}):
        with pytest.raises(ProtocolError):
            verify_auth(auth, public_key=pub, **kwargs)  # type: ignore[arg-type]
    other = base64.b64encode(
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()
    with pytest.raises(ProtocolError):
        verify_auth(auth, expected_nonce="n1", public_key=other, now_ms=2000)


@pytest.mark.parametrize("data", ["", "[]", "1", '{"type": 5}', "{", '"x"'])
def test_bad_frames(data: str) -> None:
    """Frames that are not JSON objects with a string type are bad_frame."""
    with pytest.raises(ProtocolError) as e:
        decode_frame(data)
    assert e.value.code == "bad_frame"


def _report(**over: object) -> dict[str, object]:
    r: dict[str, object] = {
        "type": "report",
        "event_id": "5b7f3c1e-8d0a-4f62-9a51-3c2e7d9b1a40",
        "seq": 1,
        "observed_at": 5,
        "parsed": {"kind": "payment", "channel": "alipay", "amount_cents": 500, "reason": "r"},
        "notification": {"package": "p", "title": "t", "text": "x", "when": 1, "key": "k"},
    }
    r.update(over)
    return r


@pytest.mark.parametrize(
    "over",
    [
        {"event_id": "not-a-uuid"},
        {"seq": -1},
        {"seq": "1"},
        {"parsed": {"kind": "payment", "channel": "paypal", "amount_cents": 1}},
        {"parsed": {"kind": "payment", "channel": "alipay", "amount_cents": 0}},
        {"parsed": {"kind": "payment", "channel": "alipay", "amount_cents": 1.5}},
        {"parsed": {"kind": "refund", "channel": "alipay", "amount_cents": 1}},
        {"notification": {"package": "p", "title": "t" * 5000, "text": "x", "when": 1, "key": "k"}},
        {"notification": "x"},
    ],
)
def test_invalid_reports(over: dict[str, object]) -> None:
    """Each malformed report field is refused with a reason."""
    with pytest.raises(ValueError):
        decode_report(_report(**over))


def test_valid_report_and_heartbeat() -> None:
    """A well-formed report and heartbeat decode to their values."""
    r = decode_report(_report())
    assert (r.amount_cents, r.channel, r.key) == (500, "alipay", "k")
    hb = decode_heartbeat(
        {
            "type": "heartbeat",
            "sent_at": 1,
            "battery": {"level": 50, "charging": True},
            "listener": {"ok": True},
            "outbox_depth": 3,
            "extra": "dropped",
        }
    )
    assert (hb.battery_level, hb.charging, hb.outbox_depth) == (50, True, 3) and "extra" not in hb.body


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=10,
        ),
        max_size=8,
    )
)
def test_decoders_never_crash(obj: dict[str, object]) -> None:
    """Arbitrary JSON objects make the decoders raise only their documented errors."""
    for decode in (decode_report, decode_heartbeat, decode_auth):
        with contextlib.suppress(ValueError, ProtocolError):
            decode(obj)  # type: ignore[operator]


def test_rate_limiter() -> None:
    """A bucket allows its burst, refuses the next, and refills with time."""
    rl = RateLimiter(rate=2, per=1.0, burst=2)
    assert [rl.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert rl.retry_after("a") > 0
    assert rl.allow("a", 1.0) and rl.allow("b", 0.0)


def test_rate_limiter_blocked_and_clock_steps() -> None:
    """`blocked` peeks without taking; a clock stepping back neither refills nor drains a bucket."""
    rl = RateLimiter(rate=1, per=1.0, burst=2)
    assert not rl.blocked("a", 0.0)
    assert rl.allow("a", 10.0) and rl.allow("a", 10.0)
    assert rl.blocked("a", 10.0) and rl.blocked("a", 10.0)  # peeking took nothing back
    assert not rl.allow("a", 5.0)  # the clock stepped back: still empty, not emptier
    assert not rl.blocked("a", 6.0) and rl.allow("a", 6.0)  # one second later, one token
