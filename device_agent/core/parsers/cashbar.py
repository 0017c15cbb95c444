"""收钱吧 (com.wosai.cashbar): an aggregator; the wallet is named by "来自微信" / "来自支付宝"."""

from __future__ import annotations

import re

from device_agent.core.parsers.common import AppRules, ParseResult, Texts, marker, rule

__all__ = ["CASHBAR", "parse_cashbar"]

CASHBAR = AppRules(
    channel="cashbar",
    incoming=(rule("cashbar.received", r"成功收款{Y}{AMOUNT}\s*元"),),  # 成功收款0.53元,来自微信
    receipts=(marker("cashbar.no_amount", r"收款到账(?:通知|提醒)|收款成功(?![0-9¥])"),),
)

_FROM_WECHAT = re.compile(r"来自\s*微信")
_FROM_ALIPAY = re.compile(r"来自\s*支付宝")


def parse_cashbar(texts: Texts) -> ParseResult:
    found = texts.primary()
    channel = "cashbar"
    if any(_FROM_WECHAT.search(t) for t in found):
        channel = "cashbar-wechat"
    elif any(_FROM_ALIPAY.search(t) for t in found):
        channel = "cashbar-alipay"
    return CASHBAR.parse(found, channel)
