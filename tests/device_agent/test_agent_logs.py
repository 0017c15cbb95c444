"""Agent log lines: one key=value line per event, secrets never, notification texts only at DEBUG."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from device_agent.logs import REDACTED, configure, log_event


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`configure` changes the process-wide `device_agent` logger: put it back afterwards."""
    root = logging.getLogger("device_agent")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    root.propagate = saved[2]


def capture(level: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    configure(level, stream)
    return logging.getLogger("device_agent.test"), stream


def test_events_are_single_key_value_lines() -> None:
    """An event prints its name and fields as key=value, quoting values with spaces."""
    log, out = capture("info")
    log_event(log, "report.acked", seq=3, status="accepted", reason="two words")
    line = out.getvalue().strip()
    assert "\n" not in line
    assert "level=info event=report.acked seq=3 status=accepted" in line
    assert 'reason="two words"' in line


def test_secret_fields_are_redacted_at_every_level() -> None:
    """Signatures, nonces and pairing codes never reach the log, not even at DEBUG."""
    log, out = capture("debug")
    log_event(log, "x", level=logging.DEBUG, signature="c2ln", code="7KQ2M9XA", nonce="bm9uY2U=")
    text = out.getvalue()
    assert "c2ln" not in text and "7KQ2M9XA" not in text and "bm9uY2U=" not in text
    assert text.count(REDACTED) == 3


def test_notification_texts_appear_only_at_debug() -> None:
    """Titles and texts are redacted in INFO lines and shown in DEBUG lines."""
    log, out = capture("debug")
    log_event(log, "a", level=logging.INFO, title="你已成功收款5.00元")
    log_event(log, "b", level=logging.DEBUG, title="你已成功收款5.00元")
    info_line, debug_line = out.getvalue().splitlines()
    assert "收款" not in info_line and REDACTED in info_line
    assert "收款" in debug_line


def test_the_level_filters_events() -> None:
    """At warning level, info events are not written."""
    log, out = capture("warning")
    log_event(log, "quiet")
    log_event(log, "loud", level=logging.WARNING)
    assert "quiet" not in out.getvalue() and "event=loud" in out.getvalue()
