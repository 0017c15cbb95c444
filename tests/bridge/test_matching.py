"""Which order a payment pays: every edge of `choose()` in one table (each row kills a mutant that would
change a money decision; see scripts/mutation and docs/testing.md)."""

from __future__ import annotations

import pytest

from bridge.core.matching import Candidate, MatchRules, choose, compatible, device_may_report

RULES = MatchRules(clock_skew_ms=1_000, late_grace_ms=5_000)
NO_LATE = MatchRules(clock_skew_ms=1_000, late_grace_ms=5_000, accept_late=False)
DEFAULT = MatchRules()


def order(
    order_id: str = "o1",
    *,
    status: str = "pending",
    created: int = 10_000,
    expires: int = 20_000,
    channel: str = "alipay",
) -> Candidate:
    return Candidate(order_id, channel, status, created, expires)


# (candidates, observed_at, rules, expected (order_id, late, reason)); window of o1: [9_000, 20_000], grace to 25_000.
CASES: list[tuple[str, list[Candidate], int, MatchRules, tuple[str | None, bool, str]]] = [
    ("inside the window", [order()], 15_000, RULES, ("o1", False, "matched")),
    ("window opens at created minus skew", [order()], 9_000, RULES, ("o1", False, "matched")),
    ("one ms before the window opens", [order()], 8_999, RULES, (None, False, "no_order")),
    ("at creation", [order()], 10_000, RULES, ("o1", False, "matched")),
    ("exactly at expiry is on time", [order()], 20_000, RULES, ("o1", False, "matched")),
    ("one ms after expiry, still pending (sweep not run): late", [order()], 20_001, RULES, ("o1", True, "late")),
    (
        "expired by the sweep, observed inside the window: on time",
        [order(status="expired")],
        15_000,
        RULES,
        ("o1", False, "matched"),
    ),
    (
        "expired, observed exactly at expiry: on time",
        [order(status="expired")],
        20_000,
        RULES,
        ("o1", False, "matched"),
    ),
    (
        "expired, observed at created minus skew: on time",
        [order(status="expired")],
        9_000,
        RULES,
        ("o1", False, "matched"),
    ),
    ("expired, observed one ms after expiry: late", [order(status="expired")], 20_001, RULES, ("o1", True, "late")),
    ("expired, end of the grace period: late", [order(status="expired")], 25_000, RULES, ("o1", True, "late")),
    ("expired, one ms after the grace period", [order(status="expired")], 25_001, RULES, (None, False, "no_order")),
    ("pending, end of the grace period: late", [order()], 25_000, RULES, ("o1", True, "late")),
    ("pending, one ms after the grace period", [order()], 25_001, RULES, (None, False, "no_order")),
    ("late refused when accept_late is off", [order(status="expired")], 21_000, NO_LATE, (None, False, "no_order")),
    ("on time is unaffected by accept_late", [order(status="expired")], 19_000, NO_LATE, ("o1", False, "matched")),
    ("closed orders never match", [order(status="closed")], 15_000, RULES, (None, False, "no_order")),
    ("paid orders never match", [order(status="paid")], 15_000, RULES, (None, False, "no_order")),
    ("closed orders never match late", [order(status="closed")], 21_000, RULES, (None, False, "no_order")),
    ("two on time: ambiguous", [order("o1"), order("o2")], 15_000, RULES, (None, False, "ambiguous")),
    (
        "two late: ambiguous",
        [order("o1", status="expired"), order("o2", expires=19_000)],
        21_000,
        RULES,
        (None, False, "ambiguous"),
    ),
    (
        "one late, one past its grace: the late one",
        [order("o1", status="expired"), order("o2", expires=10_500)],
        21_000,
        RULES,
        ("o1", True, "late"),
    ),
    (
        "on time beats late",
        [order("old", status="expired", expires=12_000), order("new", created=13_000)],
        14_000,
        RULES,
        ("new", False, "matched"),
    ),
    # An expired order's amount reused by a newer pending order (created after the sweep, 20_500):
    (
        "expired order, reused amount, observed before the new window opens",
        [order("old", status="expired"), order("new", created=20_500, expires=30_000)],
        19_000,
        RULES,
        ("old", False, "matched"),
    ),
    (
        "expired order, reused amount, observed inside both windows",
        [order("old", status="expired"), order("new", created=20_500, expires=30_000)],
        19_600,
        RULES,
        (None, False, "ambiguous"),
    ),
    (
        "expired order, reused amount, observed after the old expiry",
        [order("old", status="expired"), order("new", created=20_500, expires=30_000)],
        20_100,
        RULES,
        ("new", False, "matched"),
    ),
    ("wrong channel", [order(channel="wechat")], 15_000, RULES, (None, False, "no_order")),
    ("no candidates", [], 15_000, RULES, (None, False, "no_order")),
    (
        "the default skew is two minutes",
        [order(created=200_000, expires=400_000)],
        80_000,
        DEFAULT,
        ("o1", False, "matched"),
    ),
    ("not a ms more", [order(created=200_000, expires=400_000)], 79_999, DEFAULT, (None, False, "no_order")),
    ("the default grace is five minutes", [order(status="expired")], 320_000, DEFAULT, ("o1", True, "late")),
    ("not a ms more", [order(status="expired")], 320_001, DEFAULT, (None, False, "no_order")),
]


@pytest.mark.parametrize(("name", "candidates", "observed_at", "rules", "expected"), CASES, ids=[c[0] for c in CASES])
def test_choose(
    name: str,
    candidates: list[Candidate],
    observed_at: int,
    rules: MatchRules,
    expected: tuple[str | None, bool, str],
) -> None:
    d = choose(candidates, observed_at=observed_at, report_channel="alipay", rules=rules)
    assert (d.order_id, d.late, d.reason) == expected


@pytest.mark.parametrize(
    ("order_channel", "report_channel", "pays"),
    [
        ("alipay", "alipay", True),
        ("alipay", "wechat", False),
        ("any", "wechat", True),
        ("any", "bank", True),
        ("wechat", "cashbar-wechat", True),
        ("alipay", "cashbar-wechat", False),
        ("alipay", "cashbar", True),  # 收钱吧 without a named wallet: any channel
        ("unionpay", "bank", True),
        ("alipay", "bank", False),
        ("bank", "bank", False),  # bank notices pay unionpay orders, there is no "bank" order channel
        ("wechat", None, True),  # a report without a channel
    ],
)
def test_compatible(order_channel: str, report_channel: str | None, pays: bool) -> None:
    assert compatible(order_channel, report_channel) is pays
    d = choose([order(channel=order_channel)], observed_at=15_000, report_channel=report_channel, rules=RULES)
    assert (d.order_id == "o1") is pays


@pytest.mark.parametrize(
    ("device_channels", "report_channel", "may"),
    [
        (frozenset(), "wechat", True),  # paired without channels: any app
        (frozenset({"alipay"}), "alipay", True),
        (frozenset({"alipay"}), "wechat", False),
        (frozenset({"alipay", "wechat"}), "wechat", True),
        (frozenset({"cashbar"}), "cashbar-wechat", True),  # 收钱吧 relays count as the 收钱吧 app
        (frozenset({"cashbar"}), "cashbar-alipay", True),
        (frozenset({"cashbar"}), "cashbar", True),
        (frozenset({"wechat"}), "cashbar-wechat", False),  # the wallet it names is not the app that said it
        (frozenset({"alipay"}), "cashbar", False),
        (frozenset({"bank"}), "bank", True),
        (frozenset({"bank"}), "unionpay", False),
        (frozenset({"alipay"}), None, True),  # an unrecognised text pays nothing anyway
    ],
)
def test_device_may_report(device_channels: frozenset[str], report_channel: str | None, may: bool) -> None:
    """A device paired for some apps pays orders only with reports from those apps."""
    assert device_may_report(device_channels, report_channel) is may
