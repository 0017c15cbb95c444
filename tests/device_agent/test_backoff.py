"""The reconnect schedule: 1 s doubling to 60 s, ±20 % jitter, never overflowing."""

from __future__ import annotations

import random

import pytest

from device_agent.core.backoff import BackoffPolicy, delay_for


class Fixed:
    """An rng whose `uniform` always returns one end (or the middle) of the range."""

    def __init__(self, where: float) -> None:
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.where


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0), (6, 60.0), (7, 60.0), (50, 60.0)],
)
def test_without_jitter_the_delay_doubles_from_one_second_to_the_cap(attempt: int, expected: float) -> None:
    """With jitter 0 the schedule is exactly 1, 2, 4, ... seconds, capped at 60."""
    assert delay_for(attempt, jitter=0.0, rng=random.Random(0)) == expected


@pytest.mark.parametrize(("where", "factor"), [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
def test_jitter_spreads_the_delay_by_twenty_percent_either_way(where: float, factor: float) -> None:
    """The jittered delay lies between 80 % and 120 % of the nominal delay, at both ends."""
    assert delay_for(3, rng=Fixed(where)) == pytest.approx(8.0 * factor)
    assert delay_for(99, rng=Fixed(where)) == pytest.approx(60.0 * factor)


@pytest.mark.parametrize("attempt", [1023, 1024, 10**6, 10**30])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    """However long the bridge stays away, the delay stays at the cap instead of overflowing."""
    assert delay_for(attempt, jitter=0.0, rng=random.Random(0)) == 60.0


def test_seeded_jitter_stays_in_bounds_over_many_attempts() -> None:
    """A thousand jittered delays all respect the ±20 % band around the capped nominal delay."""
    rng = random.Random(42)
    for attempt in range(1000):
        nominal = min(60.0, 2.0 ** min(attempt, 10))
        assert 0.8 * nominal <= delay_for(attempt, rng=rng) <= 1.2 * nominal


def test_zero_base_is_the_no_wait_test_mode() -> None:
    """A policy with base 0 never waits, whatever the attempt."""
    policy = BackoffPolicy(base=0.0)
    assert [policy.delay(a, random.Random(1)) for a in (0, 5, 500)] == [0.0, 0.0, 0.0]


def test_a_small_cap_caps_the_very_first_delay() -> None:
    """A cap below the base wins from the first attempt."""
    assert delay_for(0, base=1.0, cap=0.25, jitter=0.0, rng=random.Random(0)) == 0.25


@pytest.mark.parametrize(
    "kwargs",
    [{"attempt": -1}, {"attempt": 0, "jitter": 1.0}, {"attempt": 0, "jitter": -0.1}, {"attempt": 0, "base": -1}],
)
def test_nonsense_parameters_are_refused(kwargs: dict[str, float]) -> None:
    """Negative attempts, negative bases and jitter outside [0, 1) raise ValueError."""
    rest = dict(kwargs)  # the parameter dict is shared between runs: never mutate it
    attempt = int(rest.pop("attempt"))
    with pytest.raises(ValueError):
        delay_for(attempt, rng=random.Random(0), **rest)


@pytest.mark.parametrize(
    ("base", "cap", "expected"),
    [
        (0.5, 60.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),  # a base that is not 1
        (0.5, 1.0, [0.5, 1.0, 1.0]),  # a cap of exactly 1 second
        (3.0, 3.0, [3.0, 3.0]),  # cap == base
        (1.0, 0.0, [0.0, 0.0]),  # cap 0: no wait, not an error
    ],
)
def test_exact_schedules_without_jitter(base: float, cap: float, expected: list[float]) -> None:
    """Without jitter every delay is exactly min(cap, base * 2**attempt)."""
    got = [delay_for(a, base=base, cap=cap, jitter=0.0, rng=random.Random(0)) for a in range(len(expected))]
    assert got == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempt": -1}, "attempt must be >= 0"),
        ({"attempt": 0, "base": -1}, "base and cap must be >= 0"),
        ({"attempt": 0, "cap": -1}, "base and cap must be >= 0"),
        ({"attempt": 0, "jitter": 1.0}, r"jitter must be in \[0, 1\)"),
    ],
)
def test_refusals_say_what_is_wrong(kwargs: dict[str, float], message: str) -> None:
    rest = dict(kwargs)
    attempt = int(rest.pop("attempt"))
    with pytest.raises(ValueError, match=f"^{message}$"):
        delay_for(attempt, rng=random.Random(0), **rest)


def test_the_policy_passes_all_its_parameters() -> None:
    """BackoffPolicy.delay is delay_for with the policy's base, cap and jitter and the caller's rng."""
    assert BackoffPolicy(base=1.0, cap=4.0, jitter=0.0).delay(5, random.Random(0)) == 4.0
    policy = BackoffPolicy(base=1.0, cap=100.0, jitter=0.5)
    for seed in range(5):
        expected = delay_for(3, base=1.0, cap=100.0, jitter=0.5, rng=random.Random(seed))
        assert policy.delay(3, random.Random(seed)) == expected
