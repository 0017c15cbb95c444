"""Properties of the parsers over generated input: total, never fooled by outgoing markers or decoy numbers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from device_agent.core.money import MAX_FEN, format_fen
from device_agent.core.notifications import Notification
from device_agent.core.parsers import CHANNELS, WATCHED_PACKAGES, ParseKind, parse

PACKAGES = sorted(WATCHED_PACKAGES)
OUTGOING_MARKERS = ["已支付", "支出", "消费", "扣费", "退款", "提现", "您向张三转账", "你向12345转账", "佣金"]
# Every character of every incoming phrase, kept out of the noise so the noise cannot spell one.
INCOMING_CHARS = set("收款付到账转入存赞赏汇成功向你您通过扫码支宝钱微信云闪个人二维")
FEN = st.integers(min_value=1, max_value=MAX_FEN)
NOISE = st.text(alphabet=st.characters(blacklist_characters=sorted(INCOMING_CHARS)), max_size=30)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(PACKAGES),
    st.none() | st.text(max_size=80),
    st.none() | st.text(max_size=200),
    st.lists(st.text(max_size=40), max_size=3),
)
def test_parse_is_total_and_amounts_are_positive(
    package: str, title: str | None, text: str | None, lines: list[str]
) -> None:
    """Arbitrary unicode in any watched app never makes parse raise; amounts are positive int fen on payments only."""
    got = parse(Notification(package, title, text, 0, "k", lines=tuple(lines)))
    assert isinstance(got.kind, ParseKind) and got.reason
    assert got.channel is None or got.channel in CHANNELS
    if got.amount_cents is not None:
        assert got.kind == ParseKind.PAYMENT
        assert type(got.amount_cents) is int and 0 < got.amount_cents <= MAX_FEN


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PACKAGES), st.text(max_size=12), FEN, st.text(max_size=12))
def test_money_like_text_never_raises(package: str, before: str, fen: int, after: str) -> None:
    """Random text around real-looking amounts and phrases never raises and keeps amounts positive."""
    for phrase in ("成功收款", "微信支付收款", "入账", "个人收款码到账¥", "云闪付收款"):
        got = parse(Notification(package, None, f"{before}{phrase}{format_fen(fen)}元{after}", 0, "k"))
        assert got.amount_cents is None or got.amount_cents > 0


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PACKAGES), st.none() | NOISE, st.sampled_from(OUTGOING_MARKERS), NOISE, FEN, NOISE)
def test_outgoing_money_is_never_a_payment(
    package: str, title: str | None, marker: str, before: str, fen: int, after: str
) -> None:
    """A text with an outgoing marker and an amount but no incoming phrase never yields a payment."""
    text = f"{before}{marker}{format_fen(fen)}元{after}"
    assert parse(Notification(package, title, text, 0, "k")).kind != ParseKind.PAYMENT


PHRASES = [
    ("com.eg.android.AlipayGphone", "你已成功收款{}元"),
    ("com.eg.android.AlipayGphone", "12345通过扫码向你付款{}元"),
    ("com.xiaomi.xmsf", "你已成功收款{}元"),
    ("com.tencent.mm", "微信支付收款{}元(朋友到店)"),
    ("com.tencent.mm", "个人收款码到账¥{}"),
    ("com.unionpay", "云闪付收款{}元。"),
    ("com.wosai.cashbar", "成功收款{}元,来自微信"),
    ("cmb.pb", "您账户1234于10月06日入账人民币{}元"),
]
PROMOS = [
    "{}积分兑收钱音箱，去兑换>>",
    "可兑{}收款免费额度>>",
    "免费领{}万元健康保障",
    "领{}元红包",
    "(老顾客第{}次消费)",
]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(PHRASES),
    FEN,
    st.lists(st.tuples(st.sampled_from(PROMOS), FEN), max_size=3),
    st.booleans(),
    st.booleans(),
)
def test_promo_numbers_never_change_the_amount(
    phrase: tuple[str, str], fen: int, promos: list[tuple[str, int]], promo_first: bool, in_title: bool
) -> None:
    """Random promo numbers before or after a known announcing phrase never change the parsed amount."""
    package, template = phrase
    if package == "cmb.pb":  # a bank text that says 消费 is a spend: bank credits have no such decoys
        promos = [(p, n) for p, n in promos if "消费" not in p]
    announce = template.format(format_fen(fen))
    promo = " ".join(p.format(n // 100) for p, n in promos)
    text = f"{promo} {announce}" if promo_first else f"{announce} {promo}"
    n = Notification(package, announce if in_title else None, promo if in_title else text, 0, "k")
    if package == "com.tencent.mm" and in_title:  # WeChat titles are the sender, never the message
        n = Notification(package, "微信支付", text, 0, "k")
    if "通过扫码" in template and in_title:  # only 成功收款 is seen as a whole title; a nickname title is chat
        n = Notification(package, "收款通知", text, 0, "k")
    got = parse(n)
    assert (got.kind, got.amount_cents) == (ParseKind.PAYMENT, fen), got


@settings(max_examples=200, deadline=None)
@given(FEN, st.text(alphabet="0123456789", min_size=1, max_size=8))
def test_digit_nicknames_are_not_amounts(fen: int, nickname: str) -> None:
    """A payer nickname made of digits never becomes the amount."""
    got = parse(
        Notification("com.eg.android.AlipayGphone", None, f"{nickname}通过扫码向你付款{format_fen(fen)}元", 0, "k")
    )
    assert got.amount_cents == fen


@settings(max_examples=200, deadline=None)
@given(FEN)
def test_full_width_text_parses_like_ascii(fen: int) -> None:
    """Full-width digits, point and yuan sign give the same amount as their ASCII forms."""
    ascii_amount = f"{fen // 100:,}.{fen % 100:02d}"
    wide = ascii_amount.translate(str.maketrans("0123456789.,", "０１２３４５６７８９．，"))
    for amount in (ascii_amount, wide):
        got = parse(Notification("com.tencent.mm", "微信支付", f"个人收款码到账￥{amount}", 0, "k"))
        assert got.amount_cents == fen
