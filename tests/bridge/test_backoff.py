"""The webhook retry schedule (pure): the documented delays, jitter bounds, Retry-After, and the end."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import Settings
from bridge.core.backoff import DEFAULT_SCHEDULE, ZERO_DELAY, RetryPolicy, delay_for
from bridge.errors import ConfigError
from bridge.transport import parse_retry_after

NO_JITTER = RetryPolicy(jitter=0.0)


def test_default_schedule_is_the_documented_one() -> None:
    """Attempts at 0 s, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; the setting's default is the same."""
    assert DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert Settings().schedule() == DEFAULT_SCHEDULE
    rng = random.Random(0)
    assert [delay_for(n, NO_JITTER, rng) for n in range(1, 10)] == [*map(float, DEFAULT_SCHEDULE), None]


@given(st.integers(min_value=1, max_value=len(DEFAULT_SCHEDULE)), st.integers(min_value=0, max_value=2**32))
def test_jitter_stays_within_twenty_percent(attempt: int, seed: int) -> None:
    """Every jittered delay lies within ±20 % of the scheduled one; the first attempt is always immediate."""
    d = delay_for(attempt, RetryPolicy(), random.Random(seed))
    base = DEFAULT_SCHEDULE[attempt - 1]
    assert d is not None and base * 0.8 <= d <= base * 1.2


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (2, 120.0, 120.0),  # longer than the 5 s step: honoured
        (3, 60.0, 300.0),  # shorter than the 5 min step: the schedule wins
        (2, 10.0**12, 36000.0),  # capped at max_retry_after
        (2, 0.0, 5.0),
    ],
)
def test_retry_after(attempt: int, retry_after: float, expected: float) -> None:
    """A Retry-After longer than the scheduled delay replaces it, up to the cap."""
    assert delay_for(attempt, NO_JITTER, random.Random(0), retry_after) == expected


def test_end_of_schedule_and_bad_attempts() -> None:
    """There is no attempt after the last one, even with a Retry-After; attempts count from 1."""
    assert delay_for(len(DEFAULT_SCHEDULE) + 1, NO_JITTER, random.Random(0), retry_after=5) is None
    with pytest.raises(ValueError):
        delay_for(0, NO_JITTER, random.Random(0))


def test_zero_delay_policy_and_setting() -> None:
    """Tests use a zero-delay schedule instead of patching sleep; a bad schedule setting names its variable."""
    assert all(delay_for(n, ZERO_DELAY, random.Random(0)) == 0.0 for n in range(1, ZERO_DELAY.max_attempts + 1))
    assert Settings(webhook_schedule="0,0,0").schedule() == (0, 0, 0)
    with pytest.raises(ConfigError, match="PAYBRIDGE_WEBHOOK_SCHEDULE"):
        Settings(webhook_schedule="soon").schedule()


@pytest.mark.parametrize(
    ("header", "now", "seconds"),
    [
        ("120", 0.0, 120.0),
        (" 7 ", 0.0, 7.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 60, 60.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 + 60, 0.0),  # a date in the past: retry now
        ("soon", 0.0, None),
        ("-5", 0.0, None),
        ("", 0.0, None),
        (None, 0.0, None),
    ],
)
def test_parse_retry_after(header: str | None, now: float, seconds: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP date; anything else is ignored."""
    assert parse_retry_after(header, now) == seconds


def test_exact_small_delays_and_the_retry_after_cap_edge() -> None:
    """A 1 s step is waited (not rounded to 0); a Retry-After equal to a delay above the cap changes nothing."""
    rng = random.Random(0)
    assert delay_for(1, RetryPolicy(schedule=(1,), jitter=0.0), rng) == 1.0
    long = RetryPolicy(schedule=(40_000,), jitter=0.0, max_retry_after=36_000)
    assert delay_for(1, long, rng, retry_after=40_000) == 40_000  # the schedule's own delay is never shortened
    assert delay_for(1, long, rng, retry_after=50_000) == 36_000
    with pytest.raises(ValueError, match=r"^attempts are numbered from 1$"):
        delay_for(0, RetryPolicy(), rng)
