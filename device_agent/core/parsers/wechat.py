"""WeChat (com.tencent.mm): 微信支付, 微信收款助手, 微信收款商业版, 店员消息 service accounts.

The shade shows the sender as the title and again before the message, after an unread counter:
"[3条]微信支付: 微信支付收款1.17元(朋友到店)". Only the official payment accounts count: a chat
message from a friend (or a group) that *says* "微信支付收款100元" has the friend as its sender and
is ignored (`wechat.not_official_sender`), so nobody can pay an order by typing a sentence.
The bare "收款¥X" / "收款X元" wording is trusted only from the merchant accounts (收款助手, 商业版,
店员消息); from anyone else a text needs one of the full phrases below.
"""

from __future__ import annotations

import re

from device_agent.core.parsers.common import (
    AppRules,
    ParseResult,
    Texts,
    ignored,
    looks_like_money,
    marker,
    rule,
    unrecognised,
)

__all__ = ["BUSINESS_SENDERS", "OFFICIAL_SENDERS", "WECHAT", "WECHAT_BUSINESS", "parse_wechat"]

BUSINESS_SENDERS = frozenset({"微信收款助手", "微信收款商业版", "店员消息"})
OFFICIAL_SENDERS = frozenset({"微信支付", *BUSINESS_SENDERS})
_NEUTRAL_TITLES = frozenset({"", "微信", "WeChat"})  # app name only: the sender is in the text

_FULL_PHRASES = (
    rule("wechat.pay_received", r"微信支付收款{Y}{AMOUNT}\s*元"),  # 微信支付收款1.17元(朋友到店)
    rule("wechat.personal_code", r"个人收款码到账{Y}{AMOUNT}"),  # 个人收款码到账¥20.00
    rule("wechat.reward_code", r"二维码赞赏到账{Y}{AMOUNT}"),  # 二维码赞赏到账1元
    rule("wechat.received", r"收款到账{Y}{AMOUNT}"),  # 收款到账1.00元 / 收款到账¥1.00
    rule("wechat.customer_received", r"顾客收款\s*¥\s*{AMOUNT}"),  # 微信收款商业版: 开门大吉，首位顾客收款￥99.99元
)
_RECEIPTS = (marker("wechat.no_amount", r"收款到账(?:通知|提醒)"),)

WECHAT = AppRules(channel="wechat", incoming=_FULL_PHRASES, receipts=_RECEIPTS)
WECHAT_BUSINESS = AppRules(
    channel="wechat",
    incoming=(
        *_FULL_PHRASES,
        rule("wechat.business_received", r"收款\s*¥\s*{AMOUNT}"),  # 已收款¥1.00 / 收款¥1.00
        rule("wechat.business_received", r"收款{Y}{AMOUNT}\s*元"),  # 店员消息: 收款1.00元
    ),
    receipts=_RECEIPTS,
)

_NOISE = re.compile(r"^(?:android\.app\.Notification\s*)?(?:\[[0-9]+条\]\s*)?")
_SENDER = re.compile(r"^(?P<sender>[^:]{1,32}?)\s*:\s*")


def _split(raw: str) -> tuple[str, str | None]:
    """ "[3条]微信支付: X" -> ("X", "微信支付"); a text without a "sender: " prefix -> (text, None)."""
    body = _NOISE.sub("", raw)
    m = _SENDER.match(body)
    if m is None:
        return body, None
    sender = m.group("sender")
    # "收款到账¥1.00,备注: 谢谢" has a colon but no sender: a sender name never talks money.
    if sender not in OFFICIAL_SENDERS and looks_like_money((sender,)):
        return body, None
    return body[m.end() :], sender


def _not_official(sender: str, texts: tuple[str, ...]) -> ParseResult:
    # A new official account ("微信…") talking money is format drift worth seeing; anyone else is chat.
    if sender.startswith("微信") and looks_like_money(texts):
        return unrecognised("wechat", "wechat.unknown_sender")
    return ignored("wechat", "wechat.not_official_sender")


def parse_wechat(texts: Texts) -> ParseResult:
    title = _NOISE.sub("", texts.title).rstrip(": ")
    senders: set[str] = set()
    if title in OFFICIAL_SENDERS:
        senders.add(title)
    bodies: list[str] = []
    for raw in (texts.text,) if texts.text else texts.lines:
        body, sender = _split(raw)
        if sender is not None:
            if sender not in OFFICIAL_SENDERS:
                return _not_official(sender, (body,))
            senders.add(sender)
        if body:
            bodies.append(body)
    if title not in _NEUTRAL_TITLES and title not in OFFICIAL_SENDERS:
        return _not_official(title, tuple(bodies))
    rules = WECHAT_BUSINESS if senders & BUSINESS_SENDERS else WECHAT
    return rules.parse(tuple(bodies))
