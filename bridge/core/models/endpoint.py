"""Webhook endpoints: where a merchant wants events."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.core.models.ids import EndpointId, MerchantId

__all__ = ["Endpoint", "EndpointKeys", "Subscriber", "Subscribers"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A webhook endpoint (its secrets are not part of it: see `EndpointKeys`)."""

    id: EndpointId
    merchant_id: MerchantId
    url: str
    event_types: tuple[str, ...]  # empty: every event type
    created_at: int
    disabled_at: int | None  # set when it answered 410 Gone
    disabled_reason: str | None
    deleted_at: int | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class EndpointKeys:
    """An endpoint's signing secrets, opened (only signing needs them)."""

    secret: str = field(repr=False)
    old_secret: str | None = field(repr=False)
    old_secret_expires_at: int | None


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A live endpoint as an event's fan-out sees it: where, for which types, signed with what."""

    id: EndpointId
    url: str
    event_types: tuple[str, ...]  # empty: every event type
    keys: EndpointKeys

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class Subscribers:
    """Who hears a merchant's events: its live endpoints, and the secret that signs notify_url calls."""

    endpoints: tuple[Subscriber, ...]
    webhook_secret: str = field(repr=False)
