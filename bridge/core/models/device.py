"""A relay phone (device) and a pairing code that pairs one."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import DeviceId, InstanceId, MerchantId
from bridge.core.states import DeviceStatus

__all__ = ["Device", "PairingCode"]


@dataclass(frozen=True, slots=True)
class Device:
    id: DeviceId
    merchant_id: MerchantId
    name: str
    public_key: str  # Ed25519, base64 (nothing secret)
    channels: tuple[str, ...]  # what it was paired for; empty: anything
    created_at: int  # Unix ms, as every time below
    revoked_at: int | None
    status: DeviceStatus
    status_reasons: tuple[str, ...]
    connected_since: int | None
    last_seen: int | None
    last_heartbeat: str | None  # the latest heartbeat's body, JSON
    last_heartbeat_at: int | None
    last_report_at: int | None
    reports_day: str | None  # YYYY-MM-DD (UTC) that reports_today counts
    reports_today: int
    last_seq: int  # the highest report seq seen
    held_by: InstanceId | None  # the instance holding its socket
    connection_id: str | None  # that socket's id

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class PairingCode:
    code_hash: str  # SHA-256 of the code; the code itself is shown once
    merchant_id: MerchantId
    created_at: int
    expires_at: int
    used_at: int | None
    device_id: DeviceId | None  # the device it paired
