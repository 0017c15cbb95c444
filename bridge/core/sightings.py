"""Redundant phones: which earlier payment a second phone's report of the same money is.

Two phones logged in to one receiving account each get their own notification of a payment: a
different key and `when` (seconds apart), the same text. Fingerprints cannot see that they are one
payment; this rule can. A report is another *sighting* of an earlier payment when the earlier one
was recorded from a different phone linked to a receiving account the reporter is linked to too
(the merchant said both phones watch that account: phones without links are never merged, as two
of them may watch two accounts and see two customers' payments), with the same channel and
amount, observed within `window_ms` of it, and the reporter has not already sighted it. Among
those, the earliest: so when both phones see two genuine payments of the same amount, each
phone's reports pair with the other's in order and two payments stay two. Reports from one phone
are never merged with each other: one phone, one notification, one payment.

The limit, said out loud: if phone B misses the first of two same-amount payments on a shared
account within the window and phone A misses the second, the two are recorded as one. Unique pay
amounts make that rare (a second payment of the same amount on one account within minutes pays
no pending order); `redundant_window = 0` turns merging off.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Sighting", "same_payment"]


@dataclass(frozen=True, slots=True)
class Sighting:
    """An earlier payment of the same amount and channel, on an account the reporter shares."""

    payment_id: str
    device_id: str  # the phone that recorded it
    observed_at: int
    seen_by_reporter: bool  # the reporting phone already sent a report of this payment


def same_payment(earlier: list[Sighting], *, device_id: str, observed_at: int, window_ms: int) -> str | None:
    """The payment this report is another phone's copy of, or None when it is a payment of its own."""
    if window_ms <= 0:
        return None
    fits = [
        s
        for s in earlier
        if s.device_id != device_id and not s.seen_by_reporter and abs(s.observed_at - observed_at) <= window_ms
    ]
    if not fits:
        return None
    return min(fits, key=lambda s: (s.observed_at, s.payment_id)).payment_id
