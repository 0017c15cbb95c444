"""The raw notification as every source delivers it, and its identity for dedupe."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["Notification", "fingerprint"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification as seen in the shade, in the termux-notification-list item shape.

    `when` is the notification's post time in Unix milliseconds (0 if the source does not say);
    `key` is Android's StatusBarNotification key where the source has one, else a stable
    substitute built by the source. `lines` holds inbox-style lines (may be empty).
    """

    package: str
    title: str | None
    text: str | None
    when: int
    key: str
    tag: str | None = None
    group: str | None = None
    lines: tuple[str, ...] = field(default=())

    def to_wire(self) -> dict[str, object]:
        """The `notification` object of a report frame (docs/protocol.md)."""
        return {"package": self.package, "title": self.title, "text": self.text, "when": self.when, "key": self.key}


def fingerprint(n: Notification) -> str:
    """A stable id of "the same notification re-read": package, key, when, title and text."""
    h = hashlib.sha256()
    for part in (n.package, n.key, str(n.when), n.title or "", n.text or ""):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()
