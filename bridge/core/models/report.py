"""The dedupe records of reports: per device (the report log) and per merchant (fingerprints)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import DeviceId, MerchantId, PaymentId

__all__ = ["Fingerprint", "Report"]


@dataclass(frozen=True, slots=True)
class Report:
    """A report a device sent, once per (device, event id)."""

    device_id: DeviceId
    event_id: str
    seq: int
    received_at: int  # Unix ms
    outcome: str  # "accepted" or "duplicate"
    payment_id: PaymentId | None  # the payment it recorded, or the one it duplicates


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A notification seen by a merchant's phones, and the payment it is."""

    merchant_id: MerchantId
    fingerprint: str
    seen_at: int  # Unix ms
    payment_id: PaymentId
