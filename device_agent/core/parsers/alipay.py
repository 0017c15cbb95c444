"""Alipay (com.eg.android.AlipayGphone), and Alipay texts relayed by Xiaomi's push service (com.xiaomi.xmsf).

Alipay puts the announcing phrase in the title ("你已成功收款5.00元") or in the body, and promo
text with decoy numbers in the body ("100积分兑收钱音箱", "可兑1000收款免费额度", "免费领600万元健康保障"),
so the amount is taken from the phrase wherever it is, never from the first or last number.
The voice assistant's "上一笔播报：支付宝到账 1430.00 元" repeats an old payment and is cut out.
"""

from __future__ import annotations

import re

from device_agent.core.parsers.common import MARKETING, AppRules, ParseResult, Texts, ignored, marker, rule

__all__ = ["ALIPAY", "parse_alipay", "parse_xmsf"]

ALIPAY = AppRules(
    channel="alipay",
    # "上一笔播报：支付宝到账 1430.00 元" up to and including its amount, so a new phrase after it still counts.
    replays=(re.compile(r"(?:上一?笔|重复)播报\s*[:：]?.{0,40}?[0-9][0-9,.]*\s*元?"),),
    incoming=(
        rule("alipay.received", r"成功收款{Y}{AMOUNT}\s*元"),  # (你已)成功收款5.00元
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

# A Xiaomi push notification is Alipay's when it says one of these.
_ALIPAY_WORDS = re.compile(r"支付宝|收钱码|成功收款|向你付款|向你转账|向你转了")


def parse_alipay(texts: Texts) -> ParseResult:
    return ALIPAY.parse(texts.primary())


def parse_xmsf(texts: Texts) -> ParseResult:
    """MiPush relays many apps; only texts that are recognisably Alipay's are parsed (as Alipay)."""
    found = texts.primary()
    if not any(_ALIPAY_WORDS.search(t) for t in found):
        return ignored(None, "xmsf.not_alipay")
    return ALIPAY.parse(found)
