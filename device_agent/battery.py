"""The phone's battery, from `termux-battery-status` (Termux:API); None when it cannot be read.

Only `percentage`, `status` and `plugged` are used (every key is optional in newer Termux:API,
which omits null values); charging means status CHARGING or FULL, or plugged to anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from device_agent.sources.base import run_tool

__all__ = ["battery_from_status", "read_battery"]


def battery_from_status(data: object) -> dict[str, object] | None:
    """`{"level": int, "charging": bool}` from a termux-battery-status object, None if unusable."""
    if not isinstance(data, dict):
        return None
    level = data.get("percentage")
    if isinstance(level, float) and level.is_integer():
        level = int(level)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
        return None
    status = str(data.get("status") or "").upper()
    plugged = str(data.get("plugged") or "UNPLUGGED").upper()
    return {"level": level, "charging": status in ("CHARGING", "FULL") or plugged != "UNPLUGGED"}


async def read_battery(env: Mapping[str, str] | None = None, timeout: float = 5.0) -> dict[str, object] | None:
    """Run termux-battery-status (found on env's PATH); None when absent, failing or unparsable."""
    run = await run_tool(["termux-battery-status"], env=dict(env if env is not None else os.environ), timeout=timeout)
    if run.error is not None:
        return None
    try:
        return battery_from_status(json.loads(run.stdout.decode("utf-8", errors="replace")))
    except (ValueError, RecursionError):
        return None
