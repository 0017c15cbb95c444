"""`adb[:SERIAL]`: a phone on USB beside a small Linux box, read with `dumpsys notification --noredact`.

`--noredact` is what makes dumpsys print notification texts at all; without it (or where the
ROM redacts anyway) the listener reports `redacted`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from device_agent.core.dumpsys import scan_dumpsys
from device_agent.core.notifications import Notification
from device_agent.sources.base import ListenerHealth, run_tool

__all__ = ["AdbSource"]

# Printed at the top of every dump, also when the shade is empty (no "Notification List:" then).
_DUMP_MARKER = "Notification Manager"


class AdbSource:
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
        self.argv = ["adb", *(["-s", serial] if serial else []), "shell", "dumpsys", "notification", "--noredact"]
        self._env = dict(env if env is not None else os.environ)
        self._interval = poll_interval
        self._timeout = timeout
        self._health = ListenerHealth(False, self.name, "not_started")
        self._polled = False

    def health(self) -> ListenerHealth:
        """The state after the latest poll."""
        return self._health

    def _fail(self, error: str) -> list[Notification]:
        self._health = ListenerHealth(False, self.name, error)
        return []

    async def read(self) -> list[Notification]:
        """The whole shade; [] (with health not ok) when adb or dumpsys did not deliver."""
        if self._polled:
            await asyncio.sleep(self._interval)
        self._polled = True
        run = await run_tool(self.argv, env=self._env, timeout=self._timeout)
        if run.error is not None:
            return self._fail(run.error)
        text = run.stdout.decode("utf-8", errors="replace")
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

    async def close(self) -> None:
        """Nothing stays open between polls."""
