"""Webhook deliveries: the outbox row, its attempt log, and what the worker needs to send one."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.core.models.ids import DeliveryId, EndpointId, EventId, InstanceId, MerchantId
from bridge.core.states import DeliveryStatus

__all__ = ["CompatNotify", "Delivery", "DeliveryAttempt", "Outgoing"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one URL (an endpoint's, or an order's notify_url when `endpoint_id` is None)."""

    id: DeliveryId
    event_id: EventId
    event_type: str
    merchant_id: MerchantId
    endpoint_id: EndpointId | None
    url: str
    status: DeliveryStatus
    attempts: int  # since it was last (re)queued; the attempt log numbers over its whole life
    next_attempt_at: int | None  # Unix ms; meaningful while pending
    last_status_code: int | None
    last_error: str | None
    created_at: int
    updated_at: int
    succeeded_at: int | None
    claimed_by: InstanceId | None  # the instance sending it now, if any
    lease_until: int | None  # until when (Unix ms) that claim holds unless renewed


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One HTTP attempt of a delivery, as logged."""

    delivery_id: DeliveryId
    attempt: int  # 1, 2, ... over the delivery's whole life (manual retries continue the count)
    at: int  # Unix ms
    status_code: int | None
    error: str | None  # "HTTP 500", "timeout", "network_error: …"
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CompatNotify:
    """A shop gateway notify (易支付 / V免签): unsigned fields, signed with the shop's keys at each attempt."""

    protocol: str  # epay1, epay2, vmq
    fields: str  # JSON object of the unsigned notify fields
    key: str = field(repr=False)
    private_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A delivery claimed for sending, with what it takes to sign and send it (secrets in the clear:
    never logged, `repr` leaves them out)."""

    id: DeliveryId
    event_id: EventId
    event_type: str
    merchant_id: MerchantId
    endpoint_id: EndpointId | None
    url: str
    attempts: int  # attempts so far; this one is number attempts + 1
    body: str
    lease_until: int | None  # until when this instance's claim holds (None: not claimed)
    secret: str | None = field(default=None, repr=False)  # the endpoint's
    old_secret: str | None = field(default=None, repr=False)  # its previous one, during a rotation
    old_secret_expires_at: int | None = None
    webhook_secret: str | None = field(default=None, repr=False)  # the merchant's, for a notify_url
    compat: CompatNotify | None = None  # set for a shop gateway notify (sent as a signed GET)

    def secrets(self, now: int) -> list[str]:
        """The secrets to sign with at `now`: the endpoint's (plus its previous one while the rotation
        overlap lasts), or the merchant's for an order's notify_url."""
        if self.endpoint_id is None:
            return [str(self.webhook_secret)]
        out = [str(self.secret)]
        if self.old_secret and self.old_secret_expires_at and self.old_secret_expires_at > now:
            out.append(self.old_secret)
        return out
