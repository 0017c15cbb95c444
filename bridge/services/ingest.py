"""A device report, from frame to committed outcome: dedupe, record, match, raise events. One transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.core import codec
from bridge.core.dedupe import notification_fingerprint
from bridge.core.matching import Candidate, choose, device_may_report
from bridge.core.models.ids import DeviceId, MerchantId, OrderId, PaymentId
from bridge.core.models.order import Order
from bridge.core.models.payment import Payment
from bridge.core.protocol import Report
from bridge.core.sightings import same_payment
from bridge.core.states import OrderStatus, PaymentStatus, transition
from bridge.ids import new_id
from bridge.services.compat_notify import enqueue_on_paid
from bridge.services.context import Context
from bridge.services.events import emit
from bridge.services.orders import render
from bridge.services.views import payment_json, utc_day
from bridge.store import devices as devices_store
from bridge.store import events as events_store
from bridge.store import orders as orders_store
from bridge.store import payments as store
from bridge.store.database import Tx

__all__ = ["Outcome", "ingest_report"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # "accepted" | "duplicate"
    payment_id: str | None
    order_id: str | None = None
    reason: str = ""


async def ingest_report(
    ctx: Context,
    *,
    device_id: str,
    merchant_id: str,
    report: Report,
    device_channels: frozenset[str] = frozenset(),
) -> Outcome:
    """Commit one report and everything it causes; return what to ack (after the commit)."""
    rules = ctx.match_rules
    window_ms = ctx.settings.dedupe_window * 1000
    redundant_ms = ctx.settings.redundant_window * 1000
    fp = notification_fingerprint(report.package, report.key, report.when, report.title, report.text)

    def op(tx: Tx) -> Outcome:
        now = ctx.clock.now_ms()
        # Dedupe by writing first: the report log and the fingerprint each refuse a second claim, so
        # the common case (a new payment) costs no lookups; the duplicate cases read what is there.
        payment_id = PaymentId(new_id("pay"))
        if not store.insert_report(
            tx,
            device_id=device_id,
            event_id=report.event_id,
            seq=report.seq,
            now=now,
            outcome="accepted",
            payment_id=payment_id,
        ):
            seen = store.find_report(tx, device_id, report.event_id)
            assert seen is not None
            return Outcome("duplicate", seen.payment_id, reason="same_event")
        if not store.claim_fingerprint(
            tx, merchant_id=merchant_id, fingerprint=fp, now=now, payment_id=payment_id, since=now - window_ms
        ):
            again = store.find_fingerprint(tx, merchant_id, fp, since=now - window_ms)
            assert again is not None
            store.set_report_duplicate(tx, device_id=device_id, event_id=report.event_id, payment_id=again.payment_id)
            return Outcome("duplicate", again.payment_id, reason="same_notification")
        if report.kind == "payment" and report.amount_cents is not None and redundant_ms > 0:
            earlier = store.sightings(
                tx,
                merchant_id=merchant_id,
                device_id=device_id,
                channel=report.channel,
                amount=report.amount_cents,
                since=report.observed_at - redundant_ms,
                until=report.observed_at + redundant_ms,
            )
            copy_of = same_payment(
                earlier,
                device_id=device_id,
                observed_at=report.observed_at,
                window_ms=redundant_ms,
            )
            if copy_of is not None:  # a second phone's notification of a payment already recorded
                store.set_report_duplicate(tx, device_id=device_id, event_id=report.event_id, payment_id=copy_of)
                store.point_fingerprint(tx, merchant_id, fp, copy_of)
                return Outcome("duplicate", copy_of, reason="same_payment_other_phone")
        tx.checkpoint("ingest.deduped")

        decision_order: str | None = None
        late = False
        if report.kind == "unrecognised":
            reason = "unrecognised"
        elif report.amount_cents is None:
            reason = "no_amount"
        elif not device_may_report(device_channels, report.channel):
            reason = "channel_not_paired"  # recorded for a human, never pays an order by itself
        else:
            orders = orders_store.match_candidates(
                tx, merchant_id, report.amount_cents, device_id, since=report.observed_at - rules.late_grace_ms
            )
            decision = choose(
                [Candidate(o.id, o.channel, o.status, o.created_at, o.expires_at) for o in orders],
                observed_at=report.observed_at,
                report_channel=report.channel,
                rules=rules,
            )
            decision_order, late, reason = decision.order_id, decision.late, decision.reason
        status = PaymentStatus.MATCHED if decision_order else PaymentStatus.UNMATCHED
        record = Payment(
            id=payment_id,
            merchant_id=MerchantId(merchant_id),
            device_id=DeviceId(device_id),
            kind=report.kind,
            channel=report.channel,
            amount_cents=report.amount_cents,
            status=status,
            reason=reason,
            order_id=None if decision_order is None else OrderId(decision_order),
            late=late,
            manual=False,
            observed_at=report.observed_at,
            received_at=now,
            event_id=report.event_id,
            fingerprint=fp,
            notification=codec.dumps(
                {
                    "package": report.package,
                    "title": report.title,
                    "text": report.text,
                    "when": report.when,
                    "key": report.key,
                    "parse_reason": report.parse_reason,
                },
            ),
        )
        store.insert_payment(tx, record)
        tx.checkpoint("ingest.payment_recorded")
        devices_store.record_report(tx, device_id, now=now, day=utc_day(now), seq=report.seq)
        payment = payment_json(record)
        subscribers = events_store.subscribers(tx, merchant_id)

        def payment_event(type_: str) -> None:
            emit(
                tx,
                ctx.bus,
                merchant_id=merchant_id,
                type=type_,
                data={"payment": payment},
                now=now,
                subscribers=subscribers,
            )

        if report.kind == "payment":
            payment_event("payment.received")
        if decision_order is not None:
            mark_paid(
                ctx,
                tx,
                merchant_id=merchant_id,
                order_id=decision_order,
                payment_id=payment_id,
                now=now,
                late=late,
                manual=False,
                payment=payment,
                subscribers=subscribers,
            )
            tx.after_commit.append(ctx.metrics.matches.labels("late" if late else "on_time").inc)
        else:
            tx.checkpoint("ingest.unmatched")
            payment_event("payment.unmatched")
            tx.after_commit.append(ctx.metrics.unmatched.labels(reason).inc)
        return Outcome("accepted", payment_id, decision_order, reason)

    return await ctx.db.write(op)


def mark_paid(
    ctx: Context,
    tx: Tx,
    *,
    merchant_id: str,
    order_id: str,
    payment_id: str,
    now: int,
    late: bool,
    manual: bool,
    payment: dict[str, Any] | None = None,
    subscribers: events_store.Subscribers | None = None,
) -> Order:
    """Order -> paid and its `order.paid` event, inside the caller's transaction; the paid order.
    `payment`: the payment's JSON as the caller already rendered it (matched to this order), else read here."""
    order = orders_store.set_paid(tx, merchant_id, order_id, payment_id=payment_id, now=now, late=late, manual=manual)
    if order is None:  # not payable: say why (IllegalTransition), or that it vanished
        current = orders_store.get_order(tx, merchant_id, order_id)
        if current is not None:
            transition(current.status, OrderStatus.PAID)
        raise RuntimeError("order changed underneath a write transaction")
    tx.checkpoint("ingest.order_paid")
    if payment is None:
        record = store.get_payment(tx, merchant_id, payment_id)
        assert record is not None
        payment = payment_json(record)
    event_id = emit(
        tx,
        ctx.bus,
        merchant_id=merchant_id,
        type="order.paid",
        data={"order": render(ctx, tx, order), "payment": payment},
        now=now,
        notify_url=order.notify_url,
        subscribers=subscribers,
    )
    # A shop gateway order (易支付 / V免签) also gets its shop's notify, in this same transaction.
    enqueue_on_paid(ctx, tx, order, event_id=event_id, paid_channel=payment.get("channel"), now=now)
    return order
