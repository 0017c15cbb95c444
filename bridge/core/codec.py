"""JSON on the hot paths (frames, event bodies, stored notifications), with orjson.

`dumps` gives exactly what `json.dumps(obj, ensure_ascii=False, separators=(",", ":"))` gives for
the JSON we write (str keys; str, int, bool, None, list, dict values), several times faster; the
standard module stays where byte-for-byte stability of a hash matters (order parameters).
`loads` is stricter than `json.loads`: no NaN/Infinity, no lone surrogates, nesting at most 1,024
deep; everything it refuses raises ValueError. An integer beyond 64 bits comes back as a float, which
every protocol check that wants an integer refuses.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumpb", "dumps", "loads"]


def dumpb(obj: Any) -> bytes:
    return orjson.dumps(obj)


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)
