"""The run loop: read notifications, record them durably, let the client deliver them.

```
source.read() ─► skip seen fingerprints ─► parse ─► outbox.record() ─► client.wake()
                                                     (one transaction)      │
status.json ◄── every few seconds and on change ◄── client state, outbox ◄──┘ acks
```

The outbox is the truth: a notification is marked seen and (if recognised) queued in one
transaction before anything is sent, so a SIGKILL at any moment loses nothing and repeats
nothing that the bridge has not already deduplicated. On SIGTERM/SIGINT (the CLI sets `stop`)
the reader stops reading, finishes the batch it is writing, the client closes the websocket
with 1000 and `run` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.client import DeviceClient, HeartbeatExtras, wait_event
from device_agent.config import AgentSettings
from device_agent.core.notifications import Notification, fingerprint
from device_agent.core.parsers import WATCHED_PACKAGES, ParseKind, ParseResult, parse
from device_agent.errors import AuthRejected, ConfigError
from device_agent.identity import DeviceRecord, atomic_write
from device_agent.logs import log_event
from device_agent.outbox import Outbox
from device_agent.sources.base import NotificationSource, SourceExhausted

__all__ = ["EXIT_OK", "Agent", "hold_lock", "lock_is_held", "read_status"]

log = logging.getLogger("device_agent.agent")

EXIT_OK = 0
EXIT_FAILED = 1
RECENT_FINGERPRINTS = 4096  # in-memory cache in front of the `seen` table (a shade is tens of items)
PRUNE_EVERY_S = 3600.0


class Agent:
    """Owns the reader, the client and the status writer of one `paybridge-agent run`."""

    def __init__(
        self,
        *,
        settings: AgentSettings,
        device: DeviceRecord,
        key: Ed25519PrivateKey,
        source: NotificationSource,
        outbox: Outbox,
        battery: Callable[[], Awaitable[dict[str, Any] | None]],
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        parser: Callable[[Notification], ParseResult] = parse,
    ) -> None:
        self.settings = settings
        self.device = device
        self.source = source
        self.outbox = outbox
        self._battery = battery
        self._now_ms = now_ms
        self._parse = parser
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._dirty = asyncio.Event()
        self._progress = asyncio.Event()
        self.source_exhausted = False
        self.started_at = now_ms()
        self.last_notification_at: dict[str, int] = _previous_last_seen(settings.state.status)
        self.client = DeviceClient(
            ws_url=device.ws_url,
            device_id=device.device_id,
            key=key,
            outbox=outbox,
            extras=self._heartbeat_extras,
            window=settings.window,
            heartbeat_interval=settings.heartbeat_interval,
            backoff=settings.backoff,
            now_ms=now_ms,
            agent_version=settings.agent_version,
            ack_timeout=settings.ack_timeout,
            connect_timeout=settings.connect_timeout,
            on_change=self._changed,
        )

    def _changed(self) -> None:
        self._dirty.set()
        self._progress.set()

    async def _heartbeat_extras(self) -> HeartbeatExtras:
        try:
            battery = await self._battery()
        except Exception:  # unknown is a valid answer
            battery = None
        return HeartbeatExtras(
            battery=battery,
            listener=self.source.health().to_wire(),
            last_notification_at=dict(self.last_notification_at),
        )

    # -- reading -------------------------------------------------------------------------------

    async def ingest(self, batch: list[Notification]) -> int:
        """Record the new notifications of one batch; return how many reports were queued."""
        by_fp: dict[str, Notification] = {}
        for n in sorted(batch, key=lambda n: n.when):  # a shade lists newest first; seq follows time
            by_fp.setdefault(fingerprint(n), n)
        fresh = [fp for fp in by_fp if fp not in self._recent]
        if not fresh:
            return 0
        unseen = await self.outbox.unseen(fresh)
        now = self._now_ms()
        to_record: list[tuple[Notification, ParseResult | None]] = []
        for fp in fresh:
            if fp not in unseen:
                continue
            n = by_fp[fp]
            result = self._parse(n)
            log_event(
                log,
                "notification.new",
                level=logging.DEBUG,
                package=n.package,
                title=n.title,
                text=n.text,
                kind=result.kind.value,
                reason=result.reason,
            )
            to_record.append((n, None if result.kind is ParseKind.IGNORED else result))
            if n.package in WATCHED_PACKAGES:
                seen_at = n.when or now
                self.last_notification_at[n.package] = max(seen_at, self.last_notification_at.get(n.package, 0))
        items = await self.outbox.record(to_record, now_ms=now) if to_record else []
        for fp in fresh:
            self._remember(fp)
        parsed_by_seq = [r for _, r in to_record if r is not None]
        for item, result in zip(items, parsed_by_seq, strict=True):
            log_event(
                log,
                "payment.observed" if result.kind is ParseKind.PAYMENT else "notification.unrecognised",
                seq=item.seq,
                event_id=item.event_id,
                channel=result.channel,
                amount_cents=result.amount_cents,
                reason=result.reason,
            )
        if items:
            self.client.wake()
        if to_record:
            self._changed()
        return len(items)

    def _remember(self, fp: str) -> None:
        self._recent[fp] = None
        self._recent.move_to_end(fp)
        while len(self._recent) > RECENT_FINGERPRINTS:
            self._recent.popitem(last=False)

    async def _read_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            read = asyncio.create_task(self.source.read(), name="source-read")
            stopper = asyncio.create_task(stop.wait(), name="reader-stop")
            done, _ = await asyncio.wait({read, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if read not in done:
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await read
                return
            try:
                batch = read.result()
            except SourceExhausted:
                self.source_exhausted = True
                log_event(log, "source.exhausted", source=self.source.name)
                self._changed()
                return
            except Exception as e:  # a source bug must not stop the agent; health shows it
                failures += 1
                log_event(log, "source.failed", level=logging.WARNING, source=self.source.name, error=repr(e))
                await wait_event(stop, min(60.0, self.settings.poll_interval * failures))
                continue
            failures = 0
            # Not cancellable from here on: a batch that started being written is written.
            await self.ingest(batch)

    # -- status ----------------------------------------------------------------------------------

    async def status_document(self) -> dict[str, Any]:
        """The content of status.json."""
        snap = await self.outbox.snapshot()
        c = self.client.status
        return {
            "pid": os.getpid(),
            "updated_at": self._now_ms(),
            "started_at": self.started_at,
            "agent_version": self.settings.agent_version,
            "device_id": self.device.device_id,
            "server": self.device.server,
            "source": self.source.name,
            "source_exhausted": self.source_exhausted,
            "listener": self.source.health().to_wire(),
            "connection": {
                "state": c.state.value,
                "connected_since": c.connected_since,
                "last_error": c.last_error,
                "last_close_code": c.last_close_code,
                "reconnect_attempt": c.reconnect_attempt,
                "next_retry_at": c.next_retry_at,
            },
            "last_ack_at": c.last_ack_at or snap.last_ack_at,
            "acked": dict(c.acked),
            "outbox": {"depth": snap.depth, "last_seq": snap.last_seq, "oldest_created_at": snap.oldest_created_at},
            "last_notification_at": dict(self.last_notification_at),
        }

    async def write_status(self) -> None:
        doc = await self.status_document()
        data = json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
        await asyncio.to_thread(atomic_write, self.settings.state.status, data, durable=False)

    async def _status_loop(self) -> None:
        last_prune = -PRUNE_EVERY_S
        while True:
            try:
                if time.monotonic() - last_prune >= PRUNE_EVERY_S:
                    last_prune = time.monotonic()
                    await self.outbox.prune_seen(older_than_ms=self._now_ms() - self.settings.seen_retention_ms)
                await self.write_status()
            except Exception as e:  # status is informational: never let it take the agent down
                log_event(log, "status.write_failed", level=logging.WARNING, error=repr(e))
            await wait_event(self._dirty, self.settings.status_interval)
            self._dirty.clear()

    async def _drain_watch(self, stop: asyncio.Event) -> None:
        """With --exit-when-drained: stop once the source is exhausted and the outbox is empty."""
        while not stop.is_set():
            self._progress.clear()
            if self.source_exhausted and await self.outbox.depth() == 0:
                log_event(log, "agent.drained")
                stop.set()
                return
            await wait_event(self._progress, 1.0)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop` is set (or drained, or the bridge refuses us); return the exit code."""
        log_event(
            log,
            "agent.started",
            device_id=self.device.device_id,
            server=self.device.server,
            source=self.source.name,
            window=self.settings.window,
        )
        reader = asyncio.create_task(self._read_loop(stop), name="agent-reader")
        client = asyncio.create_task(self.client.run(stop), name="agent-client")
        status = asyncio.create_task(self._status_loop(), name="agent-status")
        drain = (
            asyncio.create_task(self._drain_watch(stop), name="agent-drain")
            if self.settings.exit_when_drained
            else None
        )
        stopper = asyncio.create_task(stop.wait(), name="agent-stop")
        code = EXIT_OK
        try:
            watched: set[asyncio.Task[Any]] = {client, stopper, reader}
            while not (client.done() or stopper.done()):
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    watched.discard(reader)  # exhausted: keep delivering what is queued
                    if not reader.cancelled() and reader.exception() is not None:
                        log_event(log, "agent.reader_failed", level=logging.ERROR, error=repr(reader.exception()))
                        code = EXIT_FAILED  # e.g. the outbox cannot be written: let a supervisor restart us
                        break
            stop.set()
            if code == EXIT_OK:
                await reader  # finishes the batch being written, then sees `stop`
                code = await _client_outcome(client)
            else:
                await asyncio.wait({client}, timeout=10)  # let it close the websocket with 1000
        finally:
            stop.set()
            for t in (reader, client, stopper, status, drain):
                if t is not None and not t.done():
                    t.cancel()
            await asyncio.gather(
                *(t for t in (reader, client, stopper, status, drain) if t is not None), return_exceptions=True
            )
            with contextlib.suppress(Exception):
                await self.write_status()
            await self.source.close()
        log_event(log, "agent.stopped", exit_code=code, state=self.client.status.state.value)
        return code


async def _client_outcome(client: asyncio.Task[None]) -> int:
    try:
        await client
    except AuthRejected as e:
        return e.exit_code
    except ConfigError as e:
        log_event(log, "agent.config_error", level=logging.ERROR, error=e.message)
        return e.exit_code
    except Exception as e:  # a bug or a broken outbox: exit non-zero so a supervisor restarts us
        log_event(log, "agent.client_failed", level=logging.ERROR, error=repr(e))
        return EXIT_FAILED
    return EXIT_OK


def _previous_last_seen(status_path: Path) -> dict[str, int]:
    """Carry `last_notification_at` over from the previous run's status.json."""
    try:
        doc = json.loads(status_path.read_text("utf-8"))
        last = doc.get("last_notification_at", {})
        return {str(k): int(v) for k, v in last.items() if isinstance(v, int) and not isinstance(v, bool)}
    except (OSError, ValueError, AttributeError):
        return {}


def read_status(status_path: Path) -> dict[str, Any] | None:
    """The running (or last) agent's status.json, or None."""
    try:
        doc = json.loads(status_path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@contextlib.contextmanager
def hold_lock(path: Path) -> Iterator[IO[str]]:
    """Hold an exclusive lock on `path` for the agent's lifetime; ConfigError if another agent has it."""
    f = path.open("a+")
    try:
        deadline = time.monotonic() + 2.0  # `status` probes the lock for a moment: do not mistake it for an agent
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise ConfigError(f"another agent is already running on {path.parent}") from None
                time.sleep(0.05)
        yield f
    finally:
        f.close()


def lock_is_held(path: Path) -> bool:
    """True while some process holds the agent lock (i.e. an agent runs on this state dir)."""
    if not path.exists():
        return False
    with path.open("a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False
