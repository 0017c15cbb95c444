"""The pieces every per-app parser is built from: normalised texts, rules, markers and the verdict.

An app parser is data (`AppRules`): phrases that announce money received, each with a stable
reason, plus markers for what is *not* a new payment. `AppRules.parse` applies them in one fixed
order, so that the announcing phrase decides and decoy numbers elsewhere never do:

1. `replays` are cut out of the texts ("上一笔播报：支付宝到账 1430.00 元" repeats an old payment;
   when nothing else announces a payment the verdict is ignored, `replay_broadcast`);
2. `reports`: summaries that quote amounts but announce nothing (经营报表, 月报) -> ignored;
3. `vetoes`: outgoing markers that disable the `vetoable` phrases (bare credits in bank and
   UnionPay texts), so "退款入账" or "入账…摘要：提现" never counts (ignored with the veto's reason);
4. `incoming`: the announcing phrases, strongest first, over the title and the text together;
   the amount is the phrase's own number and must pass `parse_yuan`, or the verdict is
   `unrecognised` (`<app>.bad_amount`: a phrase we know with a number we refuse);
5. `receipts`: a payment notice that names no amount (收款到账通知) -> payment, amount null;
6. `outgoing`, then `others` (marketing, and per app e.g. 余额宝 yield, card bills) -> ignored
   with that marker's reason;
7. anything else that mentions money (收款/到账/入账/¥/…元) -> `unrecognised` (format drift the
   admin should see); the rest -> ignored, `no_payment_phrase`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from device_agent.core.money import parse_yuan

__all__ = [
    "AMOUNT",
    "MARKETING",
    "OUTGOING",
    "REPLAY",
    "REPORTS",
    "YUAN_SIGN",
    "AppRules",
    "Marker",
    "ParseKind",
    "ParseResult",
    "Rule",
    "Texts",
    "ignored",
    "looks_like_money",
    "marker",
    "normalise",
    "payment",
    "rule",
    "unrecognised",
]

# The amount as announced, in NFKC-normalised text: ASCII digits, commas only between digits, any
# number of decimals (so "1.001" is caught whole and then refused by parse_yuan, not cut to "1.00").
AMOUNT = r"(?P<amount>[0-9](?:,?[0-9])*(?:\.[0-9]+)?)"
# What may sit between a phrase and its amount: spaces, a yuan sign, "人民币".
YUAN_SIGN = r"\s*(?:人民币|RMB|CNY)?\s*¥?\s*"


class ParseKind(StrEnum):
    """What the agent does with a notification."""

    PAYMENT = "payment"  # money received: report it (amount may be null when the text names none)
    IGNORED = "ignored"  # not money received (outgoing, promo, report, replay, unwatched app): drop it
    UNRECOGNISED = "unrecognised"  # money-like text from a watched app that no rule understands: report it


@dataclass(frozen=True, slots=True)
class ParseResult:
    """The verdict on one notification; `reason` names the rule or marker that decided it."""

    kind: ParseKind
    channel: str | None
    amount_cents: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Texts:
    """A notification's strings, NFKC-normalised with whitespace collapsed ("" when absent)."""

    title: str
    text: str
    lines: tuple[str, ...] = ()

    def primary(self) -> tuple[str, ...]:
        """Title and text; inbox lines only when there is no text (older lines repeat old payments)."""
        found = tuple(t for t in (self.title, self.text) if t)
        return found if self.text else found + tuple(line for line in self.lines if line)


@dataclass(frozen=True, slots=True)
class Rule:
    """An announcing phrase: when `pattern` matches, its `amount` group is the payment.

    A `vetoable` phrase (a bare credit such as "入账X元") does not count when the app's veto
    markers are present ("退款入账", "提现 … 入账"); a sale phrase ("云闪付收款X元") always counts.
    """

    reason: str
    pattern: re.Pattern[str]
    vetoable: bool = False


@dataclass(frozen=True, slots=True)
class Marker:
    """A phrase that, when present, decides the verdict without an amount."""

    reason: str
    pattern: re.Pattern[str]

    def found(self, texts: tuple[str, ...]) -> bool:
        return any(self.pattern.search(t) for t in texts)


def rule(reason: str, pattern: str, *, vetoable: bool = False) -> Rule:
    """A Rule; `{AMOUNT}` in the pattern is the amount group and `{Y}` the optional 人民币/¥ between."""
    return Rule(reason, re.compile(pattern.replace("{Y}", YUAN_SIGN).replace("{AMOUNT}", AMOUNT)), vetoable)


def marker(reason: str, pattern: str) -> Marker:
    return Marker(reason, re.compile(pattern))


_SPACE = re.compile(r"\s+")


def normalise(text: str | None) -> str:
    """NFKC (full-width digits, punctuation, brackets and ￥ become ASCII and ¥), whitespace collapsed."""
    if not text:
        return ""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


_MONEYISH = re.compile(r"收款|到账|入账|¥|[0-9]\s*万?元")


def looks_like_money(texts: tuple[str, ...]) -> bool:
    """Whether a text talks about money at all (收款, 到账, 入账, ¥, a number of 元)."""
    return any(_MONEYISH.search(t) for t in texts)


def payment(channel: str, fen: int | None, reason: str) -> ParseResult:
    return ParseResult(ParseKind.PAYMENT, channel, fen, reason)


def ignored(channel: str | None, reason: str) -> ParseResult:
    return ParseResult(ParseKind.IGNORED, channel, None, reason)


def unrecognised(channel: str | None, reason: str) -> ParseResult:
    return ParseResult(ParseKind.UNRECOGNISED, channel, None, reason)


# A speaker's or assistant's replay of an earlier announcement ("上一笔播报：支付宝到账 1430.00 元"),
# up to and including its amount, so a new phrase after it in the same text still counts. Shared by
# every app: whatever the app, a replay repeats a payment that was already reported.
REPLAY = re.compile(r"(?:上一?笔|重复|历史)播报\s*[:：]?.{0,40}?[0-9][0-9,.]*\s*元?")

# Money leaving, shared by every app. For promo-heavy apps these are checked only after the
# announcing phrases, so "成功收款0.01元。享免费提现…" or "(老顾客消费)" does not hide a payment.
OUTGOING: tuple[Marker, ...] = (
    marker("outgoing_transfer", r"[你您](?:已)?(?:成功)?向.{0,40}?(?:转账|付款)|转账给|转账成功|转出"),
    marker("refund", r"退款|退回"),
    marker("withdrawal", r"提现"),
    marker("commission", r"佣金"),
    marker("outgoing", r"已支付|支付成功|付款成功|成功付款|支出|消费|扣费|扣款|取款|还款|自动续费|缴费"),
)
# Summaries that quote amounts without announcing a payment.
REPORTS = marker("report", r"经营报表|[日周月]报|[月年]度?账单|账单汇总|收款汇总|对账单")
# Promotions: points, coupons, red packets, free insurance.
MARKETING = marker("marketing", r"积分|红包|优惠|[领兑]取|免费领|兑换|抽奖|活动|福利|立减|返现|券|保障|额度")


@dataclass(frozen=True, slots=True)
class AppRules:
    """One app's rules; `parse` applies them in the order of the module docstring."""

    channel: str
    incoming: tuple[Rule, ...]
    receipts: tuple[Marker, ...] = ()
    replays: tuple[re.Pattern[str], ...] = (REPLAY,)
    vetoes: tuple[Marker, ...] = ()
    outgoing: tuple[Marker, ...] = OUTGOING
    others: tuple[Marker, ...] = (MARKETING,)
    reports: tuple[Marker, ...] = (REPORTS,)

    def parse(self, texts: tuple[str, ...], channel: str | None = None) -> ParseResult:
        """The verdict on these normalised texts; `channel` overrides the app's default channel."""
        chan = channel or self.channel
        app = self.channel
        kept = tuple(_cut(t, self.replays) for t in texts)
        replayed = kept != texts
        kept = tuple(t for t in kept if t)
        for m in self.reports:
            if m.found(kept):
                return ignored(chan, m.reason)
        veto = next((m for m in self.vetoes if m.found(kept)), None)
        hit = self.find_amount(kept, vetoed=veto is not None)
        if hit is not None:
            reason, fen = hit
            return payment(chan, fen, reason) if fen is not None else unrecognised(chan, f"{app}.bad_amount")
        if veto is not None:
            return ignored(chan, veto.reason)
        if replayed:
            return ignored(chan, "replay_broadcast")
        for m in self.receipts:
            if m.found(kept):
                return payment(chan, None, m.reason)
        for m in (*self.outgoing, *self.others):
            if m.found(kept):
                return ignored(chan, m.reason)
        if looks_like_money(kept):
            return unrecognised(chan, f"{app}.no_rule")
        return ignored(chan, "no_payment_phrase")

    def find_amount(self, texts: tuple[str, ...], *, vetoed: bool = False) -> tuple[str, int | None] | None:
        """The first rule (strongest first) matching any text: (reason, fen), fen None if refused.

        A refused number (zero, 3 decimals, absurd) under one rule does not stop a later match of
        the same rule from counting, but if no match of any rule is valid the first refusal wins.
        """
        refused: str | None = None
        for r in self.incoming:
            if vetoed and r.vetoable:
                continue
            for text in texts:
                for m in r.pattern.finditer(text):
                    try:
                        return r.reason, parse_yuan(m.group("amount"))
                    except ValueError:
                        refused = refused or r.reason
        return (refused, None) if refused is not None else None


def _cut(text: str, replays: tuple[re.Pattern[str], ...]) -> str:
    for pattern in replays:
        text = pattern.sub(" ", text)
    return text.strip()
