"""Yuan text <-> integer fen, exactly: digits are split and joined as text, never through a float."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_FEN", "format_fen", "parse_yuan"]

MAX_FEN = 10_000_000 * 100  # 10 million yuan: far more than any personal receiving code takes

# "1,430.00" (proper thousands groups) or "1430.00" / "12.7" / "1". ASCII digits only: NFKC folds
# full-width digits first, and other scripts' digits (which int() would accept) are refused.
_YUAN = re.compile(r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.(?P<frac>[0-9]{1,2}))?")


def parse_yuan(text: str) -> int:
    """Yuan text to fen: "1,430.00" -> 143000, "￥12.7" -> 1270, "1" -> 100, "5元" -> 500.

    Raises ValueError on anything else: empty, junk, a sign, more than 2 decimals, broken
    thousands groups, zero, or more than MAX_FEN.
    """
    cleaned = unicodedata.normalize("NFKC", text).strip()
    cleaned = cleaned.removeprefix("¥").removesuffix("元").strip()
    m = _YUAN.fullmatch(cleaned)
    if m is None:
        raise ValueError(f"not an amount in yuan: {text[:40]!r}")
    whole = int(m.group("whole").replace(",", ""))
    frac = int((m.group("frac") or "").ljust(2, "0"))
    fen = whole * 100 + frac
    if fen <= 0:
        raise ValueError(f"amount must be positive: {text[:40]!r}")
    if fen > MAX_FEN:
        raise ValueError(f"amount is absurdly large: {text[:40]!r}")
    return fen


def format_fen(fen: int) -> str:
    """Fen to yuan text with two decimals: 143000 -> "1430.00", 5 -> "0.05", -150 -> "-1.50"."""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"
