"""Per-module summary of the last mutmut run (mutants/*.meta): killed / total, score, survivor names.

Survivors listed in scripts/mutation-survivors.md (first column) are counted as equivalent and
shown apart; the score is killed / (total - equivalent).
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {1, 3}  # a failing test; mutmut's "caught by type check" uses 3 in some versions
SURVIVED = 0


def equivalent_names() -> set[str]:
    text = (ROOT / "scripts" / "mutation-survivors.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([\w.ǁ]+__mutmut_[\d*]+)`", text, re.M))


def main() -> int:
    equivalent = equivalent_names()
    metas = sorted((ROOT / "mutants").rglob("*.py.meta"))
    if not metas:
        print("no results: run scripts/mutation first")
        return 1
    unexplained = 0
    print(f"{'module':44} {'killed':>6} {'total':>6} {'equiv':>6} {'score':>7}")
    for meta in metas:
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        module = str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")
        killed = sum(1 for c in codes.values() if c in KILLED)
        pending = sum(1 for c in codes.values() if c is None)
        survivors = sorted(k for k, c in codes.items() if c not in KILLED and c is not None)
        known = [s for s in survivors if any(fnmatch.fnmatchcase(s, pattern) for pattern in equivalent)]
        left = [s for s in survivors if s not in known]
        judged = len(codes) - len(known)
        judged -= pending
        score = 100.0 * killed / judged if judged else 100.0
        note = f"  ({pending} not run yet)" if pending else ""
        print(f"{module:44} {killed:6} {len(codes):6} {len(known):6} {score:6.1f}%{note}")
        for name in left:
            print(f"    survived, unexplained: {name} (exit {codes[name]})")
        unexplained += len(left)
    print(f"unexplained survivors: {unexplained}" + ("" if unexplained else " (every survivor is listed)"))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
