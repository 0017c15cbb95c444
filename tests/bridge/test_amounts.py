"""Pay-amount candidates and yuan <-> fen at the bridge's edges: the table that pins every branch of amounts.py."""

from __future__ import annotations

import pytest

from bridge.core.amounts import MAX_FEN, candidate_amounts, check_fen, format_fen, parse_amount


@pytest.mark.parametrize(
    ("asked", "steps", "step", "direction", "expected"),
    [
        (1000, 3, 1, "down", [1000, 999, 998, 997]),
        (1000, 2, 1, "up", [1000, 1001, 1002]),
        (1000, 3, 2, "down", [1000, 998, 996, 994]),  # a step of 2 fen: never 999.5
        (1000, 2, 5, "up", [1000, 1005, 1010]),
        (1000, 0, 1, "down", [1000]),
        (2, 5, 1, "down", [2, 1]),  # never below 1 fen
        (5, 5, 2, "down", [5, 3, 1]),
        (MAX_FEN - 1, 5, 1, "up", [MAX_FEN - 1, MAX_FEN]),  # never above MAX_FEN
        (1, 3, 1, "down", [1]),
    ],
)
def test_candidate_amounts(asked: int, steps: int, step: int, direction: str, expected: list[int]) -> None:
    got = candidate_amounts(asked, steps=steps, step=step, direction=direction)
    assert got == expected
    assert all(isinstance(v, int) for v in got)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("10.00", 1000),
        ("10", 1000),
        ("9.9", 990),
        ("0.01", 1),
        ("0.1", 10),
        ("999999999999", None),  # twelve digits parse, then exceed MAX_FEN
        ("1000000000000", None),  # thirteen digits do not parse
        ("100000000", MAX_FEN),
        ("100000000.01", None),
        ("0", None),
        ("0.00", None),
        ("01", None),
        ("1.234", None),
        ("-1", None),
        ("+1", None),
        ("1.", None),
        (".5", None),
        ("1e3", None),
        ("", None),
        (" 1", None),
        ("１", None),  # full-width digits are refused at the API edge
    ],
)
def test_parse_amount(text: str, fen: int | None) -> None:
    if fen is None:
        with pytest.raises(
            ValueError, match=r'^amount (must look like "10\.00": digits|is too large|must be at least)'
        ):
            parse_amount(text)
    else:
        assert parse_amount(text) == fen


def test_parse_amount_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match=r'^amount must be a string like "10\.00"$'):
        parse_amount(1000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fen", "ok", "message"),
    [
        (1, True, ""),
        (MAX_FEN, True, ""),
        (0, False, r"^amount must be at least 0\.01$"),
        (-5, False, r"^amount must be at least 0\.01$"),
        (MAX_FEN + 1, False, "^amount is too large$"),
        (True, False, "^amount_cents must be an integer$"),
        (1.0, False, "^amount_cents must be an integer$"),
        ("100", False, "^amount_cents must be an integer$"),
    ],
)
def test_check_fen(fen: object, ok: bool, message: str) -> None:
    if ok:
        assert check_fen(fen) == fen  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match=message):
            check_fen(fen)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fen", "text"), [(1000, "10.00"), (5, "0.05"), (0, "0.00"), (-150, "-1.50"), (143000, "1430.00"), (99, "0.99")]
)
def test_format_fen(fen: int, text: str) -> None:
    assert format_fen(fen) == text
