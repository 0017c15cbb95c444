"""UnionPay 云闪付 (com.unionpay): receiving-code sales (收款) and incoming transfers (入账).

Its texts carry no promo numbers but do carry bank-card wording shared by money going out
("您向陈阳的工商银行卡…转账170.00元，已于…成功到账"), so the outgoing markers are checked first.
"""

from __future__ import annotations

from device_agent.core.parsers.common import MARKETING, OUTGOING, AppRules, ParseResult, Texts, marker, rule

__all__ = ["UNIONPAY", "parse_unionpay"]

UNIONPAY = AppRules(
    channel="unionpay",
    vetoes=OUTGOING,
    incoming=(
        rule("unionpay.received", r"云闪付收款{Y}{AMOUNT}\s*元"),  # 云闪付收款1元。
        # 您的工商银行卡6212 **** **** 7432收到来自*阳的转账170.00元
        rule("unionpay.transfer_in", r"收到(?:来自)?[^,。!]{0,40}?的?转账{Y}{AMOUNT}\s*元", vetoable=True),
        rule("unionpay.credited", r"入账(?:金额)?\s*:?{Y}{AMOUNT}\s*元", vetoable=True),  # 入账100.00元
    ),
    receipts=(marker("unionpay.no_amount", r"收款到账(?:通知|提醒)|入账(?:通知|提醒|成功)"),),
    # 您“活期+”12月28日0.11元收益已到账 (云闪付-理财信贷平台): the holder's own fund yield
    others=(MARKETING, marker("yield", r"收益")),
)


def parse_unionpay(texts: Texts) -> ParseResult:
    return UNIONPAY.parse(texts.primary())
