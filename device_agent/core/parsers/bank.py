"""A generic rule for bank credit notices, from bank apps and bank SMS: 入账 / 收入 / 存入 X元.

Bank texts carry no promo around the amount but do mix directions ("支出", "消费", "提现入账"
from the merchant's own wallet), so every outgoing marker vetoes before the credit phrases.
Shapes seen in public captures: "…收入(报销)3,344.98元，余额…" (ICBC, a label in brackets
between the verb and the amount), "发生转入交易，人民币2065.00元" (regional banks), "收款人民币0.01"
(CMB, no 元), "您已收到1元" (ICBC 工银商户之家). Money the holder moves into their own wealth or
term-deposit product ("存入…产品") is not income and vetoes.
"""

from __future__ import annotations

import re

from device_agent.core.parsers.common import MARKETING, OUTGOING, AppRules, ParseResult, Texts, ignored, marker, rule

__all__ = ["BANK", "BANK_PACKAGES", "SMS_PACKAGES", "parse_bank", "parse_bank_sms"]

BANK_PACKAGES = frozenset(
    {
        "com.chinamworld.main",  # China Construction Bank
        "com.icbc",  # ICBC
        "com.icbc.im",  # ICBC 工银信使 / 工银融e联 (account-movement messages)
        "com.icbc.biz.elife",  # ICBC 工银商户之家 (merchant receipts: "您已收到1元")
        "com.gxbbank",  # Guangxi Beibu Gulf Bank ("发生转入交易，人民币…元")
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
    vetoes=(
        *OUTGOING,
        marker("verification_code", r"验证码|校验码|动态码"),
        # 存入XX理财产品 / 成功存入1,000.00元至XX定期: the holder's own money changing place.
        marker("own_product", r"存入.{0,40}?(?:产品|理财|定期|存单)"),
    ),
    incoming=(
        # 入账人民币100.00元 / 工资收入5,000.00元 / 存入RMB 100.00 / 入账金额:100.00 / 收入(报销)3,344.98元
        rule(
            "bank.credited",
            r"(?:入账|存入|收入|转入|汇入)(?:\([^()]{0,40}\))?(?:金额)?\s*:?{Y}{AMOUNT}",
            vetoable=True,
        ),
        # 您尾号9820的账户发生转入交易，人民币2065.00元
        rule("bank.credited_event", r"转入交易\s*,?{Y}{AMOUNT}", vetoable=True),
        # 您账户9653于08月30日13:07收款人民币0.01 (a currency is required: "收款3笔" is a count)
        rule("bank.received", r"收款\s*人民币\s*{AMOUNT}", vetoable=True),
        # 工银商户之家: 您已收到1元，点击查看详情。
        rule("bank.you_received", r"已收到{Y}{AMOUNT}\s*元", vetoable=True),
        # 人民币100.00元已入账
        rule(
            "bank.credited_after",
            r"(?:人民币|RMB|CNY|¥)\s*{AMOUNT}\s*元?\s*(?:已)?(?:入账|存入|转入|到账)",
            vetoable=True,
        ),
    ),
    # credit-card statements quote amounts too (还款日 is caught earlier as outgoing 还款); so do yields
    others=(MARKETING, marker("bill", r"账单|应还"), marker("yield", r"收益|利息")),
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
