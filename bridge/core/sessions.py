"""Dashboard session rules: idle and absolute expiry, when to record activity, the CSRF token. Pure."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["SessionRules", "csrf_token", "session_alive", "should_touch"]


@dataclass(frozen=True, slots=True)
class SessionRules:
    idle_ms: int = 30 * 60 * 1000  # signed out after this long without a request
    max_ms: int = 12 * 3600 * 1000  # and after this long in any case
    touch_every_ms: int = 60 * 1000  # record activity at most this often (one write a minute, not per request)


def session_alive(*, last_seen_at: int, expires_at: int, now: int, rules: SessionRules) -> bool:
    """Neither idle for longer than `rules.idle_ms` nor past its absolute expiry."""
    return now < expires_at and now - last_seen_at < rules.idle_ms


def should_touch(*, last_seen_at: int, now: int, rules: SessionRules) -> bool:
    return now - last_seen_at >= rules.touch_every_ms


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: derived from the session id (never stored), so the database alone cannot
    forge it and it changes with every sign-in."""
    return hmac.new(session_id.encode(), b"paybridge-csrf-v1", hashlib.sha256).hexdigest()[:40]
