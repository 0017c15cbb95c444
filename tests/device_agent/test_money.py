"""Yuan text <-> fen: exact, strict, never through a float."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_agent.core.money import MAX_FEN, format_fen, parse_yuan


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("1,430.00", 143000),
        ("￥12.7", 1270),
        ("¥12.70", 1270),
        ("1", 100),
        ("0.01", 1),
        ("0.1", 10),
        ("5元", 500),
        (" 88.80 ", 8880),
        ("１，４３０．００", 143000),
        ("1,000,000", 100_000_000),
        ("10000000.00", MAX_FEN),
        ("0.29", 29),  # 0.29 * 100 is 28.999999999999996 as a float
    ],
)
def test_parse_yuan(text: str, fen: int) -> None:
    """Yuan text becomes exact fen, with separators, signs, 元 and full-width forms."""
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "",
        "¥",
        "0",
        "0.00",
        "1.001",
        "1.",
        ".5",
        "abc",
        "1,43",
        "1,4300.00",
        "12,34,567",
        "-1",
        "+1",
        "1e3",
        "10000000.01",
        "100000000",
        "١٢",
        "1 000",
        "1.0.0",
        "nan",
        "inf",
    ],
)
def test_parse_yuan_rejects(text: str) -> None:
    """Empty, zero, 3 decimals, junk, broken groups, signs, exponents, absurd amounts and foreign digits are refused."""
    with pytest.raises(ValueError):
        parse_yuan(text)


@pytest.mark.parametrize(
    ("fen", "text"), [(143000, "1430.00"), (5, "0.05"), (100, "1.00"), (0, "0.00"), (-150, "-1.50")]
)
def test_format_fen(fen: int, text: str) -> None:
    """Fen is written as yuan with exactly two decimals."""
    assert format_fen(fen) == text


@given(st.integers(min_value=1, max_value=MAX_FEN))
def test_round_trip(fen: int) -> None:
    """Every valid amount survives format then parse, with and without thousands separators."""
    assert parse_yuan(format_fen(fen)) == fen
    assert parse_yuan(f"¥{fen // 100:,}.{fen % 100:02d}") == fen
