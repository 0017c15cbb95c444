"""`replay:FILE`: JSON lines in the termux-notification-list item shape, for tests and demos.

Lines are returned in batches of up to `batch`; blank lines are ignored; a line that is not a
valid item is skipped and reported as health error `bad_line:N` (1-based). At the end of the
file `read()` raises SourceExhausted.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from device_agent.core.items import notification_from_item
from device_agent.core.notifications import Notification
from device_agent.sources.base import ListenerHealth, SourceExhausted

__all__ = ["ReplaySource"]


class ReplaySource:
    """Replays a file once, optionally waiting `delay` seconds between batches (for demos)."""

    name = "replay"

    def __init__(self, path: Path, *, batch: int = 50, delay: float = 0.0) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._path = path
        self._batch = batch
        self._delay = delay
        self._next = 0  # index of the next line to read
        self._lines: list[str] | None = None
        self._health = ListenerHealth(True, self.name, None)
        self.skipped_lines = 0

    def health(self) -> ListenerHealth:
        """Ok unless the file could not be read or a line was bad (the latest bad line is named)."""
        return self._health

    def _load(self) -> list[str]:
        try:
            return self._path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            self._health = ListenerHealth(False, self.name, f"cannot_read: {e}")
            raise SourceExhausted(str(self._path)) from e

    async def read(self) -> list[Notification]:
        """The next batch; SourceExhausted once every line was returned."""
        if self._lines is None:
            self._lines = self._load()
        elif self._delay > 0 and self._next < len(self._lines):
            await asyncio.sleep(self._delay)
        if self._next >= len(self._lines):
            raise SourceExhausted(str(self._path))
        out: list[Notification] = []
        while self._next < len(self._lines) and len(out) < self._batch:
            number, line = self._next + 1, self._lines[self._next].strip()
            self._next += 1
            if not line:
                continue
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise ValueError("not an object")
                out.append(notification_from_item(item))
            except (ValueError, RecursionError):
                self.skipped_lines += 1
                self._health = ListenerHealth(False, self.name, f"bad_line:{number}")
        return out

    async def close(self) -> None:
        """Nothing stays open."""
