"""The seam between the agent and wherever notifications come from.

`NotificationSource` is what the agent loop codes against; `ListenerHealth` is what it puts in
the heartbeat's `listener` field (docs/protocol.md). `run_tool` is the one place that runs the
phone-side helper executables (`termux-notification-list`, `adb`, `termux-battery-status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from device_agent.core.notifications import Notification

__all__ = [
    "ListenerHealth",
    "NotificationSource",
    "ShadePoller",
    "SourceExhausted",
    "ToolRun",
    "run_tool",
]

_STDERR_CHARS = 120  # enough to tell "device unauthorized" from "no devices", short enough for a heartbeat


@dataclass(frozen=True, slots=True)
class ListenerHealth:
    """Whether the notification listener works, as reported in heartbeats."""

    ok: bool
    source: str  # "termux", "adb", "http", "replay"
    error: str | None  # why not ok: "timeout", "empty_output", "exit 1: …", "bad_json", "not_installed", …

    def to_wire(self) -> dict[str, object]:
        """The heartbeat's `listener` object."""
        return {"ok": self.ok, "source": self.source, "error": self.error}


class SourceExhausted(Exception):
    """A finite source (replay) has nothing more."""


class NotificationSource(Protocol):
    """Where the agent reads notifications from."""

    name: str

    def health(self) -> ListenerHealth:
        """The listener's state after the latest read."""
        ...

    async def read(self) -> list[Notification]:
        """Wait for and return the next batch.

        Snapshot sources return the whole shade each time; the agent dedupes by fingerprint.
        Raises SourceExhausted when a finite source is done.
        """
        ...

    async def close(self) -> None:
        """Release the source's resources (idempotent)."""
        ...


@dataclass(frozen=True, slots=True)
class ToolRun:
    """The outcome of one helper run: its stdout, and why it failed (None when it exited 0)."""

    stdout: bytes
    error: str | None


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The termux-* commands are shell scripts that start `termux-api`; kill the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_tool(argv: list[str], *, env: Mapping[str, str], timeout: float) -> ToolRun:
    """Run `argv` (no shell), the executable found on env's PATH, killed after `timeout` seconds.

    The error is "not_installed", "cannot_start: …", "timeout" or "exit N: <start of stderr>".
    Cancelling the caller kills the process too.
    """
    exe = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if exe is None:
        return ToolRun(b"", "not_installed")
    try:
        proc = await asyncio.create_subprocess_exec(
            exe,
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as e:
        return ToolRun(b"", f"cannot_start: {e.strerror or e}")
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        return ToolRun(b"", "timeout")
    except BaseException:  # cancelled: do not leave the helper running
        _kill_group(proc)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        detail = err.decode("utf-8", errors="replace").strip().replace("\n", " ")[:_STDERR_CHARS]
        return ToolRun(out, f"exit {proc.returncode}: {detail}" if detail else f"exit {proc.returncode}")
    return ToolRun(out, None)


class ShadePoller:
    """What the snapshot sources (termux, adb) share: a tool run every `poll_interval` seconds
    (the first at once), with listener health following the latest poll."""

    name = "poller"

    def __init__(self, *, env: Mapping[str, str] | None, poll_interval: float, timeout: float) -> None:
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

    async def _poll(self, argv: list[str]) -> str | None:
        """Wait for the next poll time, run the tool; its stdout, or None (health set) when it failed."""
        if self._polled:
            await asyncio.sleep(self._interval)
        self._polled = True
        run = await run_tool(argv, env=self._env, timeout=self._timeout)
        if run.error is not None:
            self._fail(run.error)
            return None
        return run.stdout.decode("utf-8", errors="replace")

    async def close(self) -> None:
        """Nothing stays open between polls."""
