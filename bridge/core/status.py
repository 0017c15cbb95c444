"""A device's health from its latest heartbeat and connection. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.states import DeviceStatus

__all__ = ["HealthRules", "device_status"]


@dataclass(frozen=True, slots=True)
class HealthRules:
    heartbeat_timeout_ms: int = 90_000
    low_battery: int = 15
    outbox_backlog: int = 50


def device_status(
    *,
    connected: bool,
    last_heartbeat_at: int | None,
    listener_ok: bool | None,
    battery_level: int | None,
    charging: bool | None,
    outbox_depth: int | None,
    now: int,
    rules: HealthRules,
) -> tuple[DeviceStatus, list[str]]:
    """(status, reasons). Offline beats degraded; degraded lists every reason that holds."""
    if not connected:
        return DeviceStatus.OFFLINE, ["disconnected"]
    if last_heartbeat_at is None or now - last_heartbeat_at > rules.heartbeat_timeout_ms:
        # A fresh connection has until the timeout to send its first heartbeat.
        return (DeviceStatus.OFFLINE, ["no_heartbeat"]) if last_heartbeat_at is not None else (DeviceStatus.ONLINE, [])
    reasons: list[str] = []
    if listener_ok is False:
        reasons.append("listener_not_working")
    if battery_level is not None and battery_level < rules.low_battery and charging is False:
        reasons.append("battery_low")
    if outbox_depth is not None and outbox_depth > rules.outbox_backlog:
        reasons.append("outbox_backlog")
    return (DeviceStatus.DEGRADED if reasons else DeviceStatus.ONLINE), reasons
