"""Rate-limit counters shared by every instance on one database: hits per key and fixed window."""

from __future__ import annotations

from bridge.store.database import Tx

__all__ = ["count_hit", "drop_windows_before", "previous_hits", "undo_hit"]


def count_hit(tx: Tx, key: str, *, window_start: int) -> int:
    """Count one hit in the window starting at `window_start` (Unix ms); the window's hits now.

    The upsert locks the counter row until commit, so concurrent hits (from any instance) count one
    after the other."""
    row = tx.one(
        "INSERT INTO rate_counters (key, window_start, hits) VALUES (?, ?, 1)"
        " ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_counters.hits + 1 RETURNING hits",
        (key, window_start),
    )
    assert row is not None
    return int(row[0])


def undo_hit(tx: Tx, key: str, *, window_start: int) -> None:
    """Take back a hit that was refused (refused attempts do not count against later ones)."""
    tx.execute(
        "UPDATE rate_counters SET hits = hits - 1 WHERE key = ? AND window_start = ? AND hits > 0", (key, window_start)
    )


def previous_hits(tx: Tx, key: str, *, window_start: int) -> int:
    row = tx.one("SELECT hits FROM rate_counters WHERE key = ? AND window_start = ?", (key, window_start))
    return 0 if row is None else int(row[0])


def drop_windows_before(tx: Tx, before: int) -> int:
    return tx.execute("DELETE FROM rate_counters WHERE window_start < ?", (before,))
