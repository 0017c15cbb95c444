"""`termux`: poll `termux-notification-list` (Termux:API) for the whole notification shade.

Termux:API prints nothing at all when it has no notification access (its listener service is
not connected), so empty output is a broken listener, never "no notifications"; `[]` is an
empty shade.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping

from device_agent.core.items import notification_from_item
from device_agent.core.notifications import Notification
from device_agent.sources.base import ListenerHealth, run_tool

__all__ = ["TermuxSource", "is_group_summary"]

_AUTOGROUP = "ranker_group"


def is_group_summary(item: dict[str, object]) -> bool:
    """Android's automatic group summaries (tag/group `ranker_group`) repeat their children: skip them."""
    return any(_AUTOGROUP in str(item.get(k) or "") for k in ("tag", "group", "key"))


class TermuxSource:
    """Polls the shade every `poll_interval` seconds (the first poll at once)."""

    name = "termux"

    def __init__(
        self, *, env: Mapping[str, str] | None = None, poll_interval: float = 2.0, timeout: float = 10.0
    ) -> None:
        self._env = dict(env if env is not None else os.environ)
        self._interval = poll_interval
        self._timeout = timeout
        self._health = ListenerHealth(False, self.name, "not_started")
        self._polled = False
        self.skipped_items = 0  # items that could not be converted, over the source's life

    def health(self) -> ListenerHealth:
        """The state after the latest poll."""
        return self._health

    def _fail(self, error: str) -> list[Notification]:
        self._health = ListenerHealth(False, self.name, error)
        return []

    async def read(self) -> list[Notification]:
        """The whole shade; [] (with health not ok) when the command did not deliver."""
        if self._polled:
            await asyncio.sleep(self._interval)
        self._polled = True
        run = await run_tool(["termux-notification-list"], env=self._env, timeout=self._timeout)
        if run.error is not None:
            return self._fail(run.error)
        text = run.stdout.decode("utf-8", errors="replace").strip()
        if not text:
            return self._fail("empty_output")
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):
            return self._fail("bad_json")
        if not isinstance(items, list):
            return self._fail("bad_json")
        batch: list[Notification] = []
        for item in items:
            if not isinstance(item, dict):
                self.skipped_items += 1
                continue
            if is_group_summary(item):
                continue
            try:
                batch.append(notification_from_item(item))
            except ValueError:
                self.skipped_items += 1
        self._health = ListenerHealth(True, self.name, None)
        return batch

    async def close(self) -> None:
        """Nothing stays open between polls."""
