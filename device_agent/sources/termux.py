"""`termux`: poll `termux-notification-list` (Termux:API) for the whole notification shade.

Termux:API prints nothing at all when it has no notification access (its listener service is
not connected), so empty output is a broken listener, never "no notifications"; `[]` is an
empty shade.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from device_agent.core.items import notification_from_item
from device_agent.core.notifications import Notification
from device_agent.sources.base import ListenerHealth, ShadePoller

__all__ = ["TermuxSource", "is_group_summary"]

_AUTOGROUP = "ranker_group"


def is_group_summary(item: dict[str, object]) -> bool:
    """Android's automatic group summaries (tag/group `ranker_group`) repeat their children: skip them."""
    return any(_AUTOGROUP in str(item.get(k) or "") for k in ("tag", "group", "key"))


class TermuxSource(ShadePoller):
    """Polls the shade every `poll_interval` seconds (the first poll at once)."""

    name = "termux"

    def __init__(
        self, *, env: Mapping[str, str] | None = None, poll_interval: float = 2.0, timeout: float = 10.0
    ) -> None:
        super().__init__(env=env, poll_interval=poll_interval, timeout=timeout)
        self.skipped_items = 0  # items that could not be converted, over the source's life

    async def read(self) -> list[Notification]:
        """The whole shade; [] (with health not ok) when the command did not deliver."""
        out = await self._poll(["termux-notification-list"])
        if out is None:
            return []
        text = out.strip()
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
