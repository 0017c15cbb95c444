"""The hot-path JSON codec writes what the standard module would, and refuses what it should."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import codec

# Text as it arrives from a UTF-8 websocket frame or a database row: any code point but lone surrogates.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=30,
)


@given(JSON)
def test_dumps_matches_the_standard_module_byte_for_byte(value: Any) -> None:
    """Event bodies are signed and stored as written: the codec must not change a byte."""
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert codec.dumps(value) == expected
    assert codec.dumpb(value) == expected.encode()
    assert codec.loads(expected) == value


def test_notification_text_keeps_its_characters() -> None:
    value = {"text": '你已成功收款5.00元\n"引号"\\ \u2028 \x00 \x7f 😀', "n": 12}
    assert codec.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(
    "bad",
    ["NaN", '{"a": Infinity}', '"\\ud800"', "[" * 1100 + "]" * 1100, '{"a":1', "", "\xff"],
)
def test_loads_refuses_what_a_frame_must_not_carry(bad: str) -> None:
    with pytest.raises(ValueError):
        codec.loads(bad)


def test_an_integer_beyond_64_bits_is_not_an_integer() -> None:
    assert not isinstance(codec.loads("1" * 30), int)
