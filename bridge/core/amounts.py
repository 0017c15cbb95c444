"""Money at the edges: yuan strings <-> integer fen, and the unique pay-amount candidates."""

from __future__ import annotations

import re

__all__ = ["MAX_FEN", "candidate_amounts", "check_fen", "format_fen", "parse_amount"]

MAX_FEN = 100_000_000_00  # 100 million yuan: far beyond any personal receiving code
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?")


def parse_amount(text: str) -> int:
    """Parse a yuan amount such as "10.00", "9.9" or "12" into fen; raise ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError('amount must be a string like "10.00"')
    m = _AMOUNT.fullmatch(text)
    if m is None:
        raise ValueError('amount must look like "10.00": digits with at most two decimals, no sign')
    frac = (m.group(2) or "").ljust(2, "0")
    fen = int(m.group(1)) * 100 + int(frac)
    check_fen(fen)
    return fen


def check_fen(fen: int) -> int:
    """Validate an amount in fen: at least 1, at most MAX_FEN."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise ValueError("amount_cents must be an integer")
    if fen < 1:
        raise ValueError("amount must be at least 0.01")
    if fen > MAX_FEN:
        raise ValueError("amount is too large")
    return fen


def format_fen(fen: int) -> str:
    """1000 -> "10.00"."""
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q}.{r:02d}"


def candidate_amounts(asked: int, *, steps: int, step: int, direction: str) -> list[int]:
    """The pay amounts to try for an order of `asked` fen, in order of preference.

    The asked amount first, then `steps` more, each `step` fen further in `direction`
    ("down" or "up"). Never below 1 fen.
    """
    sign = -1 if direction == "down" else 1
    out: list[int] = []
    for i in range(steps + 1):
        value = asked + sign * i * step
        if value < 1 or value > MAX_FEN:
            break
        out.append(value)
    return out
