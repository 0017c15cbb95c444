"""What every instance on one database hears: "new events for merchant M", "device D revoked", ...

A message is a topic and ids only; whoever hears it reads the rest from the database. `publish`
hands it to the transaction (`Tx.notify`: on PostgreSQL a NOTIFY that is delivered only if the
change commits) and, after the commit, to this process's own handlers; the other instances get
it through `Database.listen` (`receive`) and drop their own. A listening connection that was lost
and made again reports a gap (`gap`): what was sent meanwhile is lost, so each gap handler
re-reads what it holds (streams look again, the hub re-checks its devices). SQLite is one process:
`publish` reaches the local handlers only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from bridge.store.database import Tx

__all__ = ["EVENTS", "REVOKED", "TAKEN", "Broadcast", "Message", "decode", "encode"]

log = structlog.get_logger("bridge.bus")

EVENTS = "events"  # key: a merchant id; new events were committed for it
REVOKED = "revoked"  # key: a device id; it was revoked, close its socket
TAKEN = "taken"  # key: a device id, extra: its new connection id; close any other connection of it


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    key: str
    extra: str = ""


def encode(origin: str, msg: Message) -> str:
    """The wire form: space-separated (ids and topics never hold spaces), far below NOTIFY's 8000 bytes."""
    parts = (origin, msg.topic, msg.key, msg.extra)
    assert all(" " not in p for p in parts), parts
    return " ".join(parts)


def decode(payload: str) -> tuple[str, Message] | None:
    """(origin instance, message), or None for something that is not ours."""
    parts = payload.split(" ")
    if len(parts) != 4 or not all(parts[:3]):
        return None
    return parts[0], Message(parts[1], parts[2], parts[3])


Handler = Callable[[Message], None]


class Broadcast:
    """Topic handlers of this process, and the instance id its messages carry."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._gap_handlers: list[Callable[[], None]] = []
        self.received = 0  # messages heard from other instances

    def on(self, topic: str, handler: Handler) -> None:
        self._handlers[topic].append(handler)

    def on_gap(self, handler: Callable[[], None]) -> None:
        self._gap_handlers.append(handler)

    def publish(self, tx: Tx, msg: Message, *, local: bool = True) -> None:
        """Tell every instance `msg` if `tx` commits; `local=False` when this process is told otherwise."""
        tx.notify(encode(self.instance, msg))
        if local:
            tx.after_commit.append(lambda: self._dispatch(msg))

    def receive(self, payload: str) -> None:
        """A payload from the database's listener (on the event loop)."""
        found = decode(payload)
        if found is None or found[0] == self.instance:
            return
        self.received += 1
        self._dispatch(found[1])

    def gap(self) -> None:
        for handler in list(self._gap_handlers):
            try:
                handler()
            except Exception as e:  # one handler failing must not keep the others from looking again
                log.error("bus.gap_handler_failed", error=repr(e))

    def _dispatch(self, msg: Message) -> None:
        for handler in list(self._handlers.get(msg.topic, ())):
            try:
                handler(msg)
            except Exception as e:
                log.error("bus.handler_failed", topic=msg.topic, key=msg.key, error=repr(e))
