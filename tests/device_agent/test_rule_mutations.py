"""Every parser rule is pinned by a fixture: each hand-written mutation of the rule tables breaks one.

mutmut mutates code, not module-level data, so the parsers' regexes, marker tables and sender
lists (where most money decisions live) were never mutated (issue 13). Here each mutation
replaces one piece of those tables in the parser modules (monkeypatched: they are our own pure
data) and every fixture is re-read: our per-app fixtures, `real.jsonl`, the shared corpus, and
one drift text per watched package. A mutation no fixture notices is a missing fixture or a dead
rule: add the fixture, or delete the rule. Mutations that cannot change a verdict are listed in
`EQUIVALENT` with the reason, as strict xfails (so a fixture that starts killing one is noticed).

Kinds: every `Rule` and `Marker` of every `AppRules` table dropped; every vetoable rule made
unvetoable; every module-level regex made never-matching; every sender/title/package entry that
decides a payment removed; and hand-written edits inside patterns (the survivors issue 13 found:
`[0-9]+条` -> `[0-9]条`, optional `¥` after 收款, the `(?<![你您])` guard, 收钱码 in the relay words).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import device_agent.core.parsers as parsers
from device_agent.core.notifications import Notification
from device_agent.core.parsers import ParseKind, alipay, bank, cashbar, common, unionpay, wechat
from device_agent.core.parsers.common import AMOUNT, YUAN_SIGN, AppRules, Marker, Rule

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures" / "parsers"
CORPUS = TESTS.parents[2] / "shared" / "corpus" / "notifications.jsonl"
TABLES: tuple[tuple[ModuleType, str], ...] = (
    (alipay, "ALIPAY"),
    (wechat, "WECHAT"),
    (wechat, "WECHAT_BUSINESS"),
    (unionpay, "UNIONPAY"),
    (bank, "BANK"),
    (cashbar, "CASHBAR"),
)
NEVER = re.compile(r"(?!)")
Item = Rule | Marker | re.Pattern[str]


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _drift_rows() -> list[dict[str, Any]]:
    """One unknown money text per watched package: pins that the package is watched and drift is seen."""
    titles = {
        parsers.ALIPAY_PACKAGE: "支付宝",
        parsers.XIAOMI_PUSH_PACKAGE: "支付宝",
        parsers.WECHAT_PACKAGE: "微信支付",
    }
    return [
        {
            "package": p,
            "title": titles.get(p, "通知"),
            "text": ("您尾号1234的账户" if p in bank.SMS_PACKAGES else "你") + "有一笔新的到账，点击查看",
            "expected": {"kind": "unrecognised", "amount_cents": None},
        }
        for p in sorted(parsers.WATCHED_PACKAGES)
    ]


ROWS = [
    *(
        r
        for app in ("alipay", "wechat", "unionpay", "cashbar", "bank", "real", "pins")
        for r in _rows(FIXTURES / f"{app}.jsonl")
    ),
    *_rows(CORPUS),
    *_drift_rows(),
]


def _holds(row: dict[str, Any]) -> bool:
    got = parsers.parse(Notification(row["package"], row["title"], row["text"], 0, "k"))
    want = row["expected"]
    if want["kind"] == "payment_in":  # the shared corpus's vocabulary
        return (got.kind, got.amount_cents, got.channel) == (ParseKind.PAYMENT, want["amount_cents"], want["channel"])
    if want["kind"] == "not_payment":
        return got.kind == ParseKind.IGNORED
    return (
        got.kind.value == want["kind"]
        and got.amount_cents == want["amount_cents"]
        and got.channel == want.get("channel", got.channel)
        and got.reason == want.get("reason", got.reason)
    )


def broken_rows() -> list[str]:
    return [f"{r['package']}: {r['title']} / {r['text']}" for r in ROWS if not _holds(r)]


# --- applying a mutation -------------------------------------------------------------------------


def substitute(mp: pytest.MonkeyPatch, old: Item, new: Item | None) -> None:
    """Replace `old` (by identity) with `new` in every table that holds it; None drops it."""
    hit = False
    for module, name in TABLES:
        table: AppRules = getattr(module, name)
        changes: dict[str, tuple[Item, ...]] = {}
        for f in fields(table):
            value = getattr(table, f.name)
            if isinstance(value, tuple) and any(x is old for x in value):
                changes[f.name] = tuple(new if x is old else x for x in value if not (x is old and new is None))
        if changes:
            mp.setattr(module, name, replace(table, **changes))  # type: ignore[arg-type]
            hit = True
    assert hit, f"{old!r} is in no table"


def edited(item: Rule | Marker, old: str, new: str) -> Rule | Marker:
    src = item.pattern.pattern
    assert old in src, f"{old!r} not in {src!r}: the rule changed, update the mutation"
    return replace(item, pattern=re.compile(src.replace(old, new)))


def edit_everywhere(mp: pytest.MonkeyPatch, old: str, new: str) -> None:
    """Edit a shared fragment (the AMOUNT or YUAN_SIGN pattern) in every rule that contains it."""
    rules = {id(r): r for module, name in TABLES for r in getattr(module, name).incoming}
    touched = [r for r in rules.values() if old in r.pattern.pattern]
    assert touched, f"{old!r} is in no rule"
    for r in touched:
        substitute(mp, r, edited(r, old, new))


def find(module: ModuleType, name: str, reason: str) -> Rule | Marker:
    table: AppRules = getattr(module, name)
    for f in fields(table):
        for x in getattr(table, f.name) if isinstance(getattr(table, f.name), tuple) else ():
            if isinstance(x, Rule | Marker) and x.reason == reason:
                return x
    raise AssertionError(f"no {reason} in {name}")


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Callable[[pytest.MonkeyPatch], None]


def _generated() -> Iterator[Mutation]:
    seen: set[int] = set()
    for module, name in TABLES:
        table: AppRules = getattr(module, name)
        for f in fields(table):
            if not isinstance(getattr(table, f.name), tuple):
                continue
            for x in getattr(table, f.name):
                if id(x) in seen:
                    continue
                seen.add(id(x))
                label = x.reason if isinstance(x, Rule | Marker) else x.pattern[:20]
                yield Mutation(f"drop {name}.{f.name} {label}", lambda mp, x=x: substitute(mp, x, None))
                if isinstance(x, Rule) and x.vetoable:
                    yield Mutation(
                        f"unvetoable {name} {x.reason}", lambda mp, x=x: substitute(mp, x, replace(x, vetoable=False))
                    )


def alternatives(src: str) -> list[tuple[int, int]]:
    """Spans to cut to drop one alternative (with one `|`) of each alternation in a regex source, at any depth."""
    spans: list[tuple[int, int]] = []
    stack: list[tuple[int, list[int]]] = [(0, [])]

    def close(start: int, seps: list[int], end: int) -> None:
        bounds = [start - 1, *seps, end]
        for k in range(len(seps) + 1):
            a, b = bounds[k] + 1, bounds[k + 1]
            spans.append((a, b + 1) if k < len(seps) else (a - 1, b))

    i, in_class = 0, False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            m = re.match(r"\?(?:P<\w+>|<?[=!]|:)", src[i + 1 :])
            stack.append((i + 1 + (m.end() if m else 0), []))
        elif c == ")":
            start, seps = stack.pop()
            if seps:
                close(start, seps, i)
        elif c == "|":
            stack[-1][1].append(i)
        i += 1
    start, seps = stack.pop()
    if seps:
        close(start, seps, len(src))
    return spans


def _shared_spans(src: str) -> list[tuple[int, int]]:
    """Where the shared AMOUNT / YUAN_SIGN fragments sit in a rule (mutated once, by `edit_everywhere`)."""
    return [(m.start(), m.end()) for frag in (AMOUNT, YUAN_SIGN) for m in re.finditer(re.escape(frag), src)]


def _alternative_drops() -> Iterator[Mutation]:
    """Drop each alternative of each alternation, in every table item and module-level regex."""
    seen: set[int] = set()
    for module, name in TABLES:
        table: AppRules = getattr(module, name)
        for f in fields(table):
            if not isinstance(getattr(table, f.name), tuple):
                continue
            for x in getattr(table, f.name):
                if id(x) in seen:
                    continue
                seen.add(id(x))
                src = x.pattern.pattern if isinstance(x, Rule | Marker) else x.pattern
                shared = _shared_spans(src)
                for a, b in alternatives(src):
                    if any(s <= a and b <= e for s, e in shared):
                        continue
                    label = x.reason if isinstance(x, Rule | Marker) else "replay"
                    yield Mutation(
                        f"{name} {label} without {src[a:b].strip('|')!r}",
                        lambda mp, x=x, src=src, a=a, b=b: substitute(mp, x, _recompiled(x, src[:a] + src[b:])),
                    )
    for module, attr in MODULE_REGEXES:
        src = getattr(module, attr).pattern
        shared = _shared_spans(src)
        for a, b in alternatives(src):
            if any(s <= a and b <= e for s, e in shared):
                continue
            yield _regex(module, attr, src[a:b], "", count=1, at=a)


def _recompiled(x: Item, src: str) -> Item:
    return re.compile(src) if isinstance(x, re.Pattern) else replace(x, pattern=re.compile(src))


def _set_minus(module: ModuleType, name: str, entry: str) -> Mutation:
    def apply(mp: pytest.MonkeyPatch) -> None:
        current = getattr(module, name)
        assert entry in current
        mp.setattr(module, name, frozenset(current - {entry}))

    return Mutation(f"{module.__name__.rsplit('.', 1)[-1]}.{name} without {entry}", apply)


def _never(module: ModuleType, name: str) -> Mutation:
    return Mutation(
        f"{module.__name__.rsplit('.', 1)[-1]}.{name} never matches", lambda mp: mp.setattr(module, name, NEVER)
    )


def _regex(module: ModuleType, name: str, old: str, new: str, *, count: int = -1, at: int = 0) -> Mutation:
    def apply(mp: pytest.MonkeyPatch) -> None:
        src = getattr(module, name).pattern
        assert old in src[at:], f"{old!r} not in {name}: the rule changed, update the mutation"
        mp.setattr(module, name, re.compile(src[:at] + src[at:].replace(old, new, count)))

    return Mutation(f"{module.__name__.rsplit('.', 1)[-1]}.{name}: {old!r} -> {new!r}", apply)


def _edit(module: ModuleType, table: str, reason: str, old: str, new: str) -> Mutation:
    def apply(mp: pytest.MonkeyPatch) -> None:
        item = find(module, table, reason)
        substitute(mp, item, edited(item, old, new))

    return Mutation(f"{table} {reason}: {old!r} -> {new!r}", apply)


def _unwatch(package: str) -> Mutation:
    def apply(mp: pytest.MonkeyPatch) -> None:
        mp.delitem(parsers._PARSERS, package)

    return Mutation(f"unwatch {package}", apply)


# Module-level regexes whose alternatives are each dropped in turn.
MODULE_REGEXES: tuple[tuple[ModuleType, str], ...] = (
    (wechat, "_NOISE"),
    (alipay, "_SYSTEMISH"),
    (alipay, "_NICKNAMED"),
    (alipay, "_NICKNAMED_PHRASE"),
    (alipay, "_REMARK"),
    (alipay, "_ALIPAY_WORDS"),
    (bank, "_BANKISH"),
    (common, "_MONEYISH"),
)

HAND_WRITTEN: tuple[Mutation, ...] = (
    # issue 13's survivors
    _regex(wechat, "_NOISE", r"[0-9]+条", r"[0-9]条"),
    _edit(wechat, "WECHAT_BUSINESS", "wechat.business_received", r"收款\s*¥\s*", r"收款\s*¥?\s*"),
    _edit(alipay, "ALIPAY", "alipay.transfer_in", r"(?<![你您])", ""),
    _regex(alipay, "_NICKNAMED", r"(?<![你您])", ""),
    _regex(alipay, "_ALIPAY_WORDS", "|收钱码", ""),
    # the shared amount and yuan-sign fragments
    Mutation("AMOUNT without thousands separators", lambda mp: edit_everywhere(mp, "(?:,?[0-9])*", "[0-9]*")),
    Mutation("AMOUNT without decimals", lambda mp: edit_everywhere(mp, r"(?:\.[0-9]+)?", "")),
    Mutation("YUAN_SIGN without ¥", lambda mp: edit_everywhere(mp, r"\s*¥?\s*", r"\s*")),
    Mutation("YUAN_SIGN without 人民币", lambda mp: edit_everywhere(mp, "(?:人民币|RMB|CNY)?", "")),
    # sender and noise handling
    _regex(wechat, "_NOISE", r"(?:android\.app\.Notification\s*)?", ""),
    _never(wechat, "_SENDER"),
    _set_minus(wechat, "OFFICIAL_SENDERS", "微信支付"),
    _set_minus(wechat, "BUSINESS_SENDERS", "微信收款助手"),
    _set_minus(wechat, "BUSINESS_SENDERS", "微信收款商业版"),
    _set_minus(wechat, "BUSINESS_SENDERS", "店员消息"),
    _set_minus(wechat, "_NEUTRAL_TITLES", "微信"),
    _set_minus(wechat, "_NEUTRAL_TITLES", ""),
    *(
        _set_minus(alipay, "SYSTEM_TITLES", t)
        for t in ("支付宝", "支付宝通知", "收钱码", "收钱码到账通知", "收款通知", "转账到账提醒")
    ),
    _never(alipay, "_TITLE_PHRASE"),
    _regex(alipay, "_TITLE_PHRASE", "(?:你已)?", ""),
    _never(alipay, "_SYSTEMISH"),
    _never(alipay, "_CHAT_PREFIX"),
    _never(alipay, "_NICKNAMED"),
    _never(alipay, "_NICKNAMED_PHRASE"),
    _never(alipay, "_REMARK"),
    _never(alipay, "_ALIPAY_WORDS"),
    _regex(alipay, "_ALIPAY_WORDS", "支付宝|", ""),
    _never(bank, "_BANKISH"),
    _never(cashbar, "_FROM_WECHAT"),
    _never(cashbar, "_FROM_ALIPAY"),
    _never(common, "_MONEYISH"),
    # edits inside rules
    _edit(bank, "BANK", "bank.credited", r"(?:\([^()]{0,40}\))?", ""),
    _edit(bank, "BANK", "bank.received", r"收款\s*人民币", r"收款\s*(?:人民币)?"),
    *(_unwatch(p) for p in sorted(parsers.WATCHED_PACKAGES)),
)

# Mutations no fixture can notice, each with why that is harmless (strict xfail: kill one, move it out).
EQUIVALENT: dict[str, str] = {}

MUTATIONS = (*_generated(), *_alternative_drops(), *HAND_WRITTEN)


def _param(m: Mutation) -> Any:
    if m.name in EQUIVALENT:
        return pytest.param(m, id=m.name, marks=pytest.mark.xfail(strict=True, reason=EQUIVALENT[m.name]))
    return pytest.param(m, id=m.name)


def test_every_fixture_holds_unmutated() -> None:
    """The harness's own baseline: without a mutation every fixture, real text and corpus row holds."""
    assert len(ROWS) > 150
    assert broken_rows() == []


@pytest.mark.parametrize("mutation", [_param(m) for m in MUTATIONS])
def test_mutation_is_noticed(mutation: Mutation, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mutation of the rule tables changes at least one fixture's verdict."""
    mutation.apply(monkeypatch)
    assert any(not _holds(r) for r in ROWS), f"no fixture notices: {mutation.name}"


def test_every_module_level_rule_is_mutated() -> None:
    """Every regex and string set at module level in the parser modules is named by some mutation."""
    names = " ".join(m.name for m in MUTATIONS)
    exempt = {"_SPACE", "SMS_PACKAGES", "BANK_PACKAGES"}  # whitespace folding; packages are mutated via `unwatch`
    missing = [
        f"{module.__name__}.{attr}"
        for module in (alipay, bank, cashbar, common, unionpay, wechat)
        for attr, value in vars(module).items()
        if isinstance(value, re.Pattern | frozenset) and attr not in exempt and attr != "REPLAY" and attr not in names
    ]
    assert missing == []
    assert any(m.name.startswith("drop ") and "replays" in m.name for m in MUTATIONS)  # REPLAY, via the tables
