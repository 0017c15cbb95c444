"""Which pending order a reported payment pays. Pure: candidates in, decision out."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.states import OrderStatus, sources

__all__ = ["Candidate", "MatchDecision", "MatchRules", "channel_family", "choose", "compatible", "device_may_report"]


def channel_family(report_channel: str | None) -> str | None:
    """The order channel a report channel pays: 收钱吧 relays count as their wallet, banks as unionpay."""
    if report_channel is None:
        return None
    if report_channel.startswith("cashbar-"):
        return report_channel.removeprefix("cashbar-")
    if report_channel == "bank":
        return "unionpay"
    if report_channel == "cashbar":
        return None  # 收钱吧 without a named wallet: any channel
    return report_channel


def device_may_report(device_channels: frozenset[str], report_channel: str | None) -> bool:
    """Whether a device paired for `device_channels` may pay orders with a report of `report_channel`.

    A device paired without channels may report any; otherwise the app that announced the payment
    must be one it was paired for (收钱吧 relays count as "cashbar", whatever wallet they name).
    """
    if not device_channels or report_channel is None:
        return True
    app = "cashbar" if report_channel.startswith("cashbar") else report_channel
    return app in device_channels


def compatible(order_channel: str, report_channel: str | None) -> bool:
    family = channel_family(report_channel)
    return order_channel == "any" or family is None or family == order_channel


# The statuses an order can be paid from (the transition table's): still waiting, or expired by the
# sweep (the payer may have paid in time, or within the late grace). Paid and closed orders never match.
_OPEN = frozenset(sources(OrderStatus.PAID))


@dataclass(frozen=True, slots=True)
class MatchRules:
    clock_skew_ms: int = 120_000  # a payment may be observed this long before the order's creation
    late_grace_ms: int = 300_000  # a payment this long after expiry still pays the order, flagged late
    accept_late: bool = True


@dataclass(frozen=True, slots=True)
class Candidate:
    """An order whose pay amount equals the payment's amount, on an account the device sees."""

    order_id: str
    channel: str
    status: OrderStatus  # pending or expired
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class MatchDecision:
    order_id: str | None
    late: bool
    reason: str  # "matched", "late", "no_order", "ambiguous", "no_amount", "unrecognised"


def choose(
    candidates: list[Candidate], *, observed_at: int, report_channel: str | None, rules: MatchRules
) -> MatchDecision:
    """Pick the one order this payment pays, or say why none.

    On time: an order whose window [created_at - clock_skew_ms, expires_at] contains the moment the
    payment was observed, whatever its status now. It may still be pending, or the expiry sweep
    may have marked it expired before a phone that was offline delivered the report: the payer
    paid in time either way, so it is paid, not late.

    Late: failing that, an order (pending because the sweep has not run yet, or expired) whose
    expiry came at most `late_grace_ms` before the observation; flagged late. Two such orders are
    ambiguous too.

    Exactly one order in the first group that has any wins; two or more are ambiguous and a
    human decides. That includes an expired order whose amount was released and reused by a newer
    pending order when the observation falls inside both windows (the newer order opens at its
    creation minus the clock skew); when it falls before the newer window opens, the expired order
    is the only fit and is paid.
    """
    fits = [c for c in candidates if compatible(c.channel, report_channel) and c.status in _OPEN]
    on_time = [c for c in fits if c.created_at - rules.clock_skew_ms <= observed_at <= c.expires_at]
    if len(on_time) == 1:
        return MatchDecision(on_time[0].order_id, late=False, reason="matched")
    if len(on_time) > 1:
        return MatchDecision(None, late=False, reason="ambiguous")
    if rules.accept_late:
        # After the expiry, hence after the window opened (an order expires after its creation).
        late = [c for c in fits if c.expires_at < observed_at <= c.expires_at + rules.late_grace_ms]
        if len(late) == 1:
            return MatchDecision(late[0].order_id, late=True, reason="late")
        if len(late) > 1:
            return MatchDecision(None, late=False, reason="ambiguous")
    return MatchDecision(None, late=False, reason="no_order")
