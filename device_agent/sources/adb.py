"""`adb[:SERIAL]`: a phone on USB beside a small Linux box, read with `dumpsys notification --noredact`.

`--noredact` is what makes dumpsys print notification texts at all; without it (or where the
ROM redacts anyway) the listener reports `redacted`.
"""

from __future__ import annotations

from collections.abc import Mapping

from device_agent.core.dumpsys import scan_dumpsys
from device_agent.core.notifications import Notification
from device_agent.sources.base import ListenerHealth, ShadePoller

__all__ = ["AdbSource"]

# Printed at the top of every dump, also when the shade is empty (no "Notification List:" then).
_DUMP_MARKER = "Notification Manager"


class AdbSource(ShadePoller):
    """Polls the shade through adb every `poll_interval` seconds (the first poll at once)."""

    name = "adb"

    def __init__(
        self,
        serial: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        poll_interval: float = 2.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(env=env, poll_interval=poll_interval, timeout=timeout)
        self.argv = ["adb", *(["-s", serial] if serial else []), "shell", "dumpsys", "notification", "--noredact"]

    async def read(self) -> list[Notification]:
        """The whole shade; [] (with health not ok) when adb or dumpsys did not deliver."""
        text = await self._poll(self.argv)
        if text is None:
            return []
        if not text.strip():
            return self._fail("empty_output")
        scan = scan_dumpsys(text)
        if scan.records == 0 and _DUMP_MARKER not in text:
            return self._fail("unrecognised_output")  # e.g. "Can't find service: notification"
        if scan.redacted:
            self._health = ListenerHealth(False, self.name, "redacted")
        else:
            self._health = ListenerHealth(True, self.name, None)
        return list(scan.notifications)
