"""Payment notification parsers: one per app, pure functions of the notification.

`parse(n)` says whether a notification announces money received (with the channel and the amount
in fen, or no amount), is something else and why (`ignored`), or is money-like text from a
watched app that no rule understands (`unrecognised`: reported, so admins see format drift).
Each app's rules live in its own module; the order they are applied in is described in `common`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from device_agent.core.notifications import Notification
from device_agent.core.parsers.alipay import parse_alipay, parse_xmsf
from device_agent.core.parsers.bank import BANK_PACKAGES, SMS_PACKAGES, parse_bank, parse_bank_sms
from device_agent.core.parsers.cashbar import parse_cashbar
from device_agent.core.parsers.common import ParseKind, ParseResult, Texts, ignored, normalise
from device_agent.core.parsers.unionpay import parse_unionpay
from device_agent.core.parsers.wechat import parse_wechat

__all__ = [
    "ALIPAY_PACKAGE",
    "CASHBAR_PACKAGE",
    "CHANNELS",
    "UNIONPAY_PACKAGE",
    "WATCHED_PACKAGES",
    "WECHAT_PACKAGE",
    "XIAOMI_PUSH_PACKAGE",
    "ParseKind",
    "ParseResult",
    "PaymentParser",
    "parse",
]

ALIPAY_PACKAGE = "com.eg.android.AlipayGphone"
XIAOMI_PUSH_PACKAGE = "com.xiaomi.xmsf"  # MiPush: Alipay notifications arrive through it on Xiaomi phones
WECHAT_PACKAGE = "com.tencent.mm"
UNIONPAY_PACKAGE = "com.unionpay"
CASHBAR_PACKAGE = "com.wosai.cashbar"
# Every channel a verdict can name (docs/protocol.md, `parsed.channel`); null for unwatched apps.
CHANNELS = frozenset({"alipay", "wechat", "unionpay", "cashbar-wechat", "cashbar-alipay", "cashbar", "bank"})


class PaymentParser(Protocol):
    """One app's parser: normalised texts in, a verdict out; never raises."""

    def __call__(self, texts: Texts, /) -> ParseResult: ...


_PARSERS: dict[str, Callable[[Texts], ParseResult]] = {
    ALIPAY_PACKAGE: parse_alipay,
    XIAOMI_PUSH_PACKAGE: parse_xmsf,
    WECHAT_PACKAGE: parse_wechat,
    UNIONPAY_PACKAGE: parse_unionpay,
    CASHBAR_PACKAGE: parse_cashbar,
    **dict.fromkeys(BANK_PACKAGES, parse_bank),
    **dict.fromkeys(SMS_PACKAGES, parse_bank_sms),
}
WATCHED_PACKAGES: frozenset[str] = frozenset(_PARSERS)


def parse(n: Notification) -> ParseResult:
    """Classify one notification. Never raises, whatever the text."""
    parser = _PARSERS.get(n.package)
    if parser is None:
        return ignored(None, "not_watched")
    texts = Texts(normalise(n.title), normalise(n.text), tuple(normalise(line) for line in n.lines))
    return parser(texts)
