"""A generic rule for bank credit notices, from bank apps and bank SMS: 入账 / 收入 / 存入 X元.

Bank texts carry no promo around the amount but do mix directions ("支出", "消费", "提现入账"
from the merchant's own wallet), so every outgoing marker vetoes before the credit phrases.
"""

from __future__ import annotations

import re

from device_agent.core.parsers.common import MARKETING, OUTGOING, AppRules, ParseResult, Texts, ignored, marker, rule

__all__ = ["BANK", "BANK_PACKAGES", "SMS_PACKAGES", "parse_bank", "parse_bank_sms"]

BANK_PACKAGES = frozenset(
    {
        "com.chinamworld.main",  # China Construction Bank
        "com.icbc",  # ICBC
        "cmb.pb",  # China Merchants Bank
        "com.android.bankabc",  # Agricultural Bank of China
        "com.chinamworld.bocmbci",  # Bank of China
        "com.bankcomm.Bankcomm",  # Bank of Communications
        "com.ecitic.bank.mobile",  # China CITIC Bank
        "com.spdb.mobilebank.per",  # SPD Bank
        "com.cib.cibmb",  # Industrial Bank
        "com.yitong.mbank.psbc",  # Postal Savings Bank
        "com.cmbc.cc.mbank",  # China Minsheng Bank
        "com.webank.wemoney",  # WeBank
    }
)
# SMS apps: bank SMS are parsed, other SMS are ignored (`sms.not_bank`).
SMS_PACKAGES = frozenset(
    {
        "com.android.mms",
        "com.google.android.apps.messaging",
        "com.samsung.android.messaging",
    }
)

BANK = AppRules(
    channel="bank",
    vetoes=(*OUTGOING, marker("verification_code", r"验证码|校验码|动态码")),
    incoming=(
        # 入账人民币100.00元 / 工资收入5,000.00元 / 存入RMB 100.00 / 入账金额:100.00
        rule("bank.credited", r"(?:入账|存入|收入|转入|汇入)(?:金额)?\s*:?{Y}{AMOUNT}", vetoable=True),
        # 人民币100.00元已入账
        rule(
            "bank.credited_after",
            r"(?:人民币|RMB|CNY|¥)\s*{AMOUNT}\s*元?\s*(?:已)?(?:入账|存入|转入|到账)",
            vetoable=True,
        ),
    ),
    others=(MARKETING, marker("bill", r"账单|还款日|应还")),  # credit-card statements quote amounts too
)

_BANKISH = re.compile(r"银行|尾号|账户|储蓄卡|借记卡|信用卡|账号")


def parse_bank(texts: Texts) -> ParseResult:
    return BANK.parse(texts.primary())


def parse_bank_sms(texts: Texts) -> ParseResult:
    """An SMS is only parsed as a bank notice when it looks like one (a bank, a card tail, an account)."""
    found = texts.primary()
    if not any(_BANKISH.search(t) for t in found):
        return ignored(None, "sms.not_bank")
    return BANK.parse(found)
