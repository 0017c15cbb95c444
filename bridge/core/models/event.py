"""An event of a merchant's feed (`GET /v1/events`, the SSE stream, the webhook body)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import EventId, MerchantId

__all__ = ["Event", "Position"]

# Where an event stands in its merchant's feed: (writing transaction, seq). Commit order: an event
# is listed only once every transaction that could still commit one before it has ended.
Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Event:
    id: EventId
    merchant_id: MerchantId
    type: str
    created_at: int  # Unix ms
    body: str  # the JSON document, exactly as delivered
    position: Position
