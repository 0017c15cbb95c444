"""Alipay (com.eg.android.AlipayGphone), and Alipay texts relayed by Xiaomi's push service (com.xiaomi.xmsf).

Alipay puts the announcing phrase in the title ("你已成功收款5.00元") or in the body, and promo
text with decoy numbers in the body ("100积分兑收钱音箱", "可兑1000收款免费额度", "免费领600万元健康保障"),
so the amount is taken from the phrase wherever it is, never from the first or last number.
The voice assistant's "上一笔播报：支付宝到账 1430.00 元" repeats an old payment and is cut out.

Alipay also carries chat: a friend's message shows the friend (or group) as the title and the
message as the text, so "你已成功收款100.00元" typed by 张三 looks like a receipt. Only texts Alipay
itself posts count (`sender_verdict`):

- the title is one of Alipay's own titles (`SYSTEM_TITLES`, each seen in public captures), is
  itself the receipt phrase ("你已成功收款5.00元": some phones move the phrase into the title),
  or is absent (accessibility captures) and the text has no "name: " chat prefix;
- a title that merely looks like Alipay's wording ("支付宝商家助手") may be format drift: it is
  parsed, but a payment becomes `unrecognised` (`alipay.unknown_sender`) for an admin to look at;
- any other title is a person or a group: ignored (`alipay.not_system_sender`).

Within a system text, the payer writes two things: their nickname before "通过扫码向你付款" /
"向你转账", and the transfer's remark after it. Neither may supply the amount (`system_part`):
the nickname is dropped, the text is cut to the "向你…X元" phrase, and a labelled remark
("备注：…") is cut off. Two such phrases in one text cannot be told apart from a nickname that
spells one: `unrecognised` (`alipay.ambiguous`).
"""

from __future__ import annotations

import re

from device_agent.core.parsers.common import (
    AMOUNT,
    MARKETING,
    YUAN_SIGN,
    AppRules,
    ParseResult,
    Texts,
    ignored,
    looks_like_money,
    marker,
    rule,
    unrecognised,
)

__all__ = ["ALIPAY", "SYSTEM_TITLES", "parse_alipay", "parse_xmsf", "sender_verdict", "system_part"]

ALIPAY = AppRules(
    channel="alipay",
    incoming=(
        rule("alipay.received", r"成功收款{Y}{AMOUNT}\s*元"),  # (你已)成功收款5.00元 / 支付宝成功收款1.00元
        rule("alipay.scan_paid", r"通过扫码向你付款{Y}{AMOUNT}\s*元"),  # vone通过扫码向你付款0.01元
        rule("alipay.code_received", r"收钱码收款{Y}{AMOUNT}\s*元"),
        rule("alipay.transfer_in", r"(?<![你您])向你转账{Y}{AMOUNT}\s*元"),  # 张三向你转账100.00元
        rule("alipay.arrived", r"支付宝到账{Y}{AMOUNT}\s*元"),  # voice-broadcast wording
    ),
    receipts=(
        marker("alipay.no_amount", r"(?:收钱码|收款)到账(?:通知|提醒)|收款通知"),
        marker("alipay.transfer_no_amount", r"向你转了\s*[0-9]*\s*笔钱"),
    ),
    others=(MARKETING, marker("yield", r"收益")),  # 余额宝 yield ("昨日收益到账0.12元") is not a sale
)

# Titles Alipay posts under, each seen in a public capture (receiptnotice issues #81, #90, #97;
# AutoRule issues #106, #255; the message-box titles 资金到账通知 / 收到一笔转账 / 转账成功 / 付款成功)
# or in this project's fixtures. A chat notification's title is a person's or a group's name.
SYSTEM_TITLES = frozenset(
    {
        "支付宝",
        "支付宝通知",
        "收钱码",
        "收钱码到账通知",
        "收款通知",
        "收款到账通知",
        "转账到账提醒",
        "资金到账通知",
        "收到一笔转账",
        "交易提醒",
        "转账成功",
        "付款成功",
        "退款通知",
        "提现到账",
        "余额宝",
    }
)
# The receipt phrase as a whole title ("你已成功收款5.00元", receiptnotice issues #99, #102).
_TITLE_PHRASE = re.compile(rf"(?:你已)?成功收款{YUAN_SIGN}{AMOUNT}\s*元")
# A title in Alipay's own vocabulary that is not (yet) in SYSTEM_TITLES: drift, never trusted with money.
_SYSTEMISH = re.compile(r"支付宝|收钱码|收款|到账|转账|余额宝|花呗|蚂蚁|通知|提醒|助手|播报|月报|账单")
# "张三: 你已成功收款100.00元" in a title-less capture: a group chat line.
_CHAT_PREFIX = re.compile(r"^(?P<sender>[^:]{1,32}?)\s*:\s*")

# Phrases that follow the payer's nickname; what stands before them is the nickname.
_NICKNAMED = re.compile(r"通过扫码向你付款|(?<![你您])向你转账")
_NICKNAMED_PHRASE = re.compile(rf"(?:通过扫码向你付款|向你转账){YUAN_SIGN}{AMOUNT}\s*元")
# A transfer's remark, written by the payer: cut from its label on (the label Alipay's cards use).
_REMARK = re.compile(r"备注\s*:")  # texts are NFKC-folded: "：" is ":"

# A Xiaomi push notification is Alipay's when it says one of these.
_ALIPAY_WORDS = re.compile(r"支付宝|收钱码|成功收款|向你付款|向你转账|向你转了")


def sender_verdict(texts: Texts) -> ParseResult | None:
    """None when Alipay itself posted this (parse on); otherwise the verdict on a chat or unknown sender."""
    title = texts.title
    if title in SYSTEM_TITLES or _TITLE_PHRASE.fullmatch(title):
        return None
    if not title:
        m = _CHAT_PREFIX.match(texts.text)
        if m is None or _SYSTEMISH.search(m.group("sender")) or looks_like_money((m.group("sender"),)):
            return None
        return ignored("alipay", "alipay.not_system_sender")
    if _SYSTEMISH.search(title):
        return unrecognised("alipay", "alipay.unknown_sender")  # only ever downgrades a payment
    return ignored("alipay", "alipay.not_system_sender")


def system_part(text: str) -> str | None:
    """The part of one text Alipay wrote: no nickname before a "X向你…" phrase, no remark after it.

    None when the text holds two such phrases (a nickname may spell one: which is real is unknowable).
    """
    m = _REMARK.search(text)
    if m is not None:
        text = text[: m.start()]
    found = list(_NICKNAMED.finditer(text))
    if not found:
        return text
    phrases = [p for f in found if (p := _NICKNAMED_PHRASE.match(text, f.start())) is not None]
    if len(phrases) > 1:
        return None
    return phrases[0].group(0) if phrases else text[found[-1].start() :]


def _parse(found: tuple[str, ...], verdict: ParseResult | None) -> ParseResult:
    parts = tuple(system_part(t) for t in found)
    if any(p is None for p in parts):
        return unrecognised("alipay", "alipay.ambiguous")
    result = ALIPAY.parse(tuple(p for p in parts if p))
    if verdict is None or (verdict.kind == "unrecognised" and result.kind != "payment"):
        return result
    return verdict


def parse_alipay(texts: Texts) -> ParseResult:
    verdict = sender_verdict(texts)
    if verdict is not None and verdict.kind == "ignored":
        return verdict
    return _parse(texts.primary(), verdict)


def parse_xmsf(texts: Texts) -> ParseResult:
    """MiPush relays many apps; only texts that are recognisably Alipay's are parsed (as Alipay)."""
    found = texts.primary()
    if not any(_ALIPAY_WORDS.search(t) for t in found):
        return ignored(None, "xmsf.not_alipay")
    return parse_alipay(texts)
