"""The system at a glance, for the admin: the database, the relay phones, the webhook sender."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridge.core.models.delivery import SenderBacklog
from bridge.core.states import DeviceStatus

__all__ = ["Health"]


@dataclass(frozen=True, slots=True)
class Health:
    read_ms: float  # how long a read of the figures below took (the database answered)
    devices: Mapping[DeviceStatus, int]  # devices not revoked, by status (absent: none)
    deliveries: SenderBacklog
    sender_mode: str  # the webhook sender's mode (PAYBRIDGE_WEBHOOK_SENDER)

    @property
    def sender_ok(self) -> bool:
        """The sender keeps up: nothing is overdue."""
        return self.deliveries.overdue == 0
