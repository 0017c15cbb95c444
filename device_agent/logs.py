"""Agent logging: the standard library, one `key=value` line per event, secrets redacted.

    2026-11-27T01:02:03.456Z level=info event=outbox.enqueued seq=42 amount_cents=500 package=com.eg...

Call `log_event(logger, "outbox.enqueued", seq=42, ...)`; the event name is stable and the fields
are structured. Values of fields whose names say they are secret (`signature`, `private_key`,
`code`, `nonce`, `token`, ...) are replaced by `<redacted>` whatever the level. Notification
titles and texts may only be passed at DEBUG (`log_event(..., level=logging.DEBUG, title=...)`);
at higher levels `title`/`text` fields are redacted too.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

__all__ = ["REDACTED", "KeyValueFormatter", "configure", "log_event"]

REDACTED = "<redacted>"
_SECRET_FIELDS = frozenset({"signature", "private_key", "key_pem", "code", "pair_code", "nonce", "token", "secret"})
_TEXT_FIELDS = frozenset({"title", "text", "lines", "body", "notification"})


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return text


class KeyValueFormatter(logging.Formatter):
    """`<UTC time> level=<level> event=<name> k=v ...`, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [ts, f"level={record.levelname.lower()}", f"event={_quote(record.getMessage())}"]
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        for k, v in fields.items():
            if k in _SECRET_FIELDS or (k in _TEXT_FIELDS and record.levelno > logging.DEBUG):
                v = REDACTED
            parts.append(f"{k}={_quote(v)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one named event with structured fields (secrets and texts redacted by the formatter)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def configure(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the `device_agent` loggers to `stream` (stderr by default) as key=value lines."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("device_agent")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    root.propagate = False
