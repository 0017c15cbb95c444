"""The cross-instance bus's wire form and the shared rate limit's window decision (pure, no database)."""

from __future__ import annotations

import pytest

from bridge.core.ratelimit import window_wait
from bridge.services.bus import EVENTS, TAKEN, Broadcast, Message, decode, encode


def test_a_message_survives_its_wire_form_and_foreign_payloads_are_ignored() -> None:
    """encode/decode round-trip ids and topics; a payload that is not ours decodes to None."""
    msg = Message(TAKEN, "dev_1", "conn_2")
    assert decode(encode("inst_a", msg)) == ("inst_a", msg)
    assert decode(encode("inst_a", Message(EVENTS, "mch_1"))) == ("inst_a", Message(EVENTS, "mch_1", ""))
    for junk in ("", "hello", "a b", "a b c d e", " events mch_1 "):
        assert decode(junk) is None


def test_a_broadcast_ignores_its_own_messages_and_reports_gaps() -> None:
    """What an instance sent comes back through the database: it is dropped (its own process was told
    at commit); another instance's message reaches the topic's handlers; a gap reaches gap handlers."""
    bus = Broadcast("inst_me")
    heard: list[Message] = []
    gaps: list[bool] = []
    bus.on(EVENTS, heard.append)
    bus.on_gap(lambda: gaps.append(True))
    bus.receive(encode("inst_me", Message(EVENTS, "mch_1")))
    bus.receive(encode("inst_other", Message(EVENTS, "mch_2")))
    bus.receive(encode("inst_other", Message(TAKEN, "dev_1", "conn_1")))  # no handler: nothing happens
    bus.gap()
    assert heard == [Message(EVENTS, "mch_2")] and gaps == [True] and bus.received == 2


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "limit", "wait"),
    [
        (0, 1, 0.0, 4, 0.0),  # the first attempt
        (0, 4, 0.5, 4, 0.0),  # the limit itself is allowed
        (0, 5, 0.5, 4, 0.75),  # over it: into the next window, until this one (4 hits) weighs 3
        (4, 1, 0.0, 4, 0.25),  # just past a boundary the previous window still counts in full
        (4, 1, 0.25, 4, 0.0),  # ... and less as the window goes on
        (4, 3, 0.5, 4, 0.25),  # 3 + 4 * 0.5 = 5 > 4: allowed once the previous weighs 1
        (2, 5, 0.9, 4, 0.1 + 0.25),  # over the limit in this window: next window, previous = 4
    ],
)
def test_the_sliding_window_allows_the_limit_and_no_burst_around_a_boundary(
    previous: int, current: int, elapsed: float, limit: int, wait: float
) -> None:
    """The current window's hits plus the previous window's weighted by what is left of it stay within
    the limit; the wait is how long (in windows) until this attempt would fit."""
    assert window_wait(previous=previous, current=current, elapsed=elapsed, limit=limit) == pytest.approx(wait)
