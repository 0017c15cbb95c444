"""Webhook endpoints: where a merchant wants events."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.core.models.ids import EndpointId, MerchantId

__all__ = ["Endpoint", "EndpointKeys"]


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
