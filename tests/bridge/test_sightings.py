"""Redundant phones, the pure rule: which earlier payment a second phone's report is a copy of."""

from __future__ import annotations

import pytest

from bridge.core.sightings import Sighting, same_payment

WINDOW = 120_000


def s(payment_id: str, device_id: str, observed_at: int, seen: bool = False) -> Sighting:
    return Sighting(payment_id, device_id, observed_at, seen)


@pytest.mark.parametrize(
    ("earlier", "device", "observed_at", "expected"),
    [
        ([], "B", 1000, None),
        ([s("p1", "A", 1000)], "B", 4000, "p1"),  # the other phone, seconds later: a copy
        ([s("p1", "A", 4000)], "B", 1000, "p1"),  # the copy may be observed first
        ([s("p1", "A", 1000)], "A", 1500, None),  # one phone's two notifications are two payments
        ([s("p1", "A", 1000, seen=True)], "B", 1500, None),  # B already sighted p1: this is a new one
        ([s("p1", "A", 1000)], "B", 1000 + WINDOW, "p1"),  # the window's edge is inside
        ([s("p1", "A", 1000)], "B", 1001 + WINDOW, None),  # past it: a payment of its own
        ([s("p2", "A", 3000), s("p1", "A", 1000)], "B", 3500, "p1"),  # pair in order: earliest first
        ([s("p2", "A", 3000), s("p1", "A", 1000, seen=True)], "B", 3500, "p2"),
    ],
)
def test_same_payment_rule(earlier: list[Sighting], device: str, observed_at: int, expected: str | None) -> None:
    """The earliest unsighted payment from another phone within the window, or none."""
    assert same_payment(earlier, device_id=device, observed_at=observed_at, window_ms=WINDOW) == expected


def test_window_zero_turns_merging_off() -> None:
    """redundant_window = 0: every report is a payment of its own."""
    assert same_payment([s("p1", "A", 1000)], device_id="B", observed_at=1000, window_ms=0) is None


def test_the_smallest_window_still_merges() -> None:
    """Any positive window merges: 1 ms joins two sightings 1 ms apart."""
    assert same_payment([s("p1", "A", 1000)], device_id="B", observed_at=1001, window_ms=1) == "p1"
