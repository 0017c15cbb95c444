"""The 易支付 and V免签 protocol cores against the known answers of the real clients (table-driven, no loop)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import epay, vmq
from tests.bridge.compat_vectors import VECTORS, key, needs_vectors, notifies_of, requests_of, rsa_keys

pytestmark = needs_vectors

V1_CLIENTS = ("v2board", "xboard", "dujiaoka-yipay", "sdk-v1")


def _params(request: dict[str, Any]) -> dict[str, str]:
    return dict(request["params"] if "params" in request else request["form"]["fields"])


@pytest.mark.parametrize(("client", "request_"), requests_of(*V1_CLIENTS))
def test_v1_requests_verify(client: str, request_: dict[str, Any]) -> None:
    """Every V1 request a real client sends has our canonical string and verifies with the key."""
    params = _params(request_)
    assert epay.canonical(params) == request_["canonical"]
    assert epay.md5_verify(params, key(), params["sign"])
    assert not epay.md5_verify(params, key()[:-1] + "X", params["sign"])
    assert not epay.md5_verify({**params, "money": "99"}, key(), params["sign"])
    assert not epay.md5_verify(params, key(), params["sign"].upper())
    epay.check_out_trade_no(params["out_trade_no"])
    assert epay.money_fen(params["money"]) == round(float(params["money"]) * 100)


@pytest.mark.parametrize(("client", "request_"), requests_of("sdk-v2"))
def test_v2_requests_verify(client: str, request_: dict[str, Any]) -> None:
    """The V2 SDK's requests verify with the merchant's public key over our canonical string."""
    params = {**request_["input"], "sign": request_["sign"], "sign_type": request_["sign_type"]}
    assert epay.canonical(params) == request_["canonical"]
    public = epay.load_public_key(rsa_keys()["merchant_public_key"])
    assert epay.rsa_verify(params, public, request_["sign"])
    assert not epay.rsa_verify({**params, "money": "99"}, public, request_["sign"])
    assert not epay.rsa_verify(params, public, "not base64!")


@pytest.mark.parametrize(("client", "request_"), requests_of("dujiaoka-vpay"))
def test_vmq_requests_verify(client: str, request_: dict[str, Any]) -> None:
    """dujiaoka's V免签 createOrder sign is md5(payId + param + type + price + key)."""
    p = request_["params"]
    assert vmq.create_verify(p["payId"], p["param"], p["type"], p["price"], key(), p["sign"])
    assert not vmq.create_verify(p["payId"], p["param"], p["type"], "99", key(), p["sign"])
    assert vmq.PAY_TYPES[p["type"]] == "alipay"


def _our_v1_notify(params: dict[str, str]) -> dict[str, str]:
    """What we would send for the order the vector's good notify is about."""
    fields = epay.notify_params(
        pid=int(params["pid"]),
        trade_no=params["trade_no"],
        out_trade_no=params["out_trade_no"],
        pay_type=params["type"],
        name=params["name"],
        money=params["money"],
        param=params.get("param", ""),
    )
    return {**fields, "sign": epay.md5_sign(fields, key()), "sign_type": "MD5"}


@pytest.mark.parametrize(("client", "notify"), notifies_of(*V1_CLIENTS))
def test_v1_notify_cases(client: str, notify: dict[str, Any]) -> None:
    """For an accepted case, our notify of the same fields is that request exactly (never with an empty
    parameter); for a refused case, our notify of the order differs from it."""
    params = dict(notify["params"])
    good = next(n for _, n in notifies_of(client) if n["case"] == "good")["params"]
    if notify["accepted"]:
        ours = _our_v1_notify({**good, "money": params["money"], "param": params.get("param", "")})
        assert ours == {k: v for k, v in params.items() if v != ""}
        assert all(v.strip() != "" for v in ours.values())
    else:
        assert _our_v1_notify(good) != params


def test_v1_notify_never_sends_the_paid_amount_or_drops_trade_no() -> None:
    """dujiaoka refuses money = the amount paid and a notify without trade_no; ours carries the asked money."""
    cases = {n["case"]: n for _, n in notifies_of("dujiaoka-yipay")}
    asked = cases["good"]["params"]
    ours = _our_v1_notify(asked)
    assert ours["money"] == "10" and "trade_no" in ours
    assert ours != cases["money_is_amount_paid_9.99"]["params"]
    assert not cases["money_is_amount_paid_9.99"]["accepted"] and not cases["no_trade_no"]["accepted"]


@pytest.mark.parametrize(("client", "notify"), notifies_of("sdk-v1"))
def test_sdk_v1_computes_our_sign(client: str, notify: dict[str, Any]) -> None:
    """The SDK's own sign over each case's params equals our md5_sign (so our notifies verify there)."""
    assert epay.md5_sign(notify["params"], key()) == notify["sign_the_sdk_computes"]


@pytest.mark.parametrize(("client", "notify"), notifies_of("sdk-v2"))
def test_v2_notify_signature(client: str, notify: dict[str, Any]) -> None:
    """Signing the good V2 notify's fields with the platform key gives the vector's sign (PKCS#1 v1.5 is
    deterministic); a tampered one does not verify."""
    params = dict(notify["params"])
    platform = epay.load_private_key(rsa_keys()["platform_private_key"])
    public = epay.load_public_key(rsa_keys()["platform_public_key"])
    assert epay.rsa_verify(params, public, params["sign"]) is notify["signature_valid"]
    if notify["case"] == "good":
        fields = epay.notify_params(
            pid=int(params["pid"]),
            trade_no=params["trade_no"],
            out_trade_no=params["out_trade_no"],
            pay_type=params["type"],
            name=params["name"],
            money=params["money"],
            param="",
            timestamp=int(params["timestamp"]),
        )
        assert epay.rsa_sign(fields, platform) == params["sign"]
        assert {**fields, "sign": params["sign"], "sign_type": "RSA"} == params
        assert not notify["verify_accepts_stale_timestamp"]
        assert not epay.timestamp_fresh(params["timestamp"], int(params["timestamp"]) + 301)
        assert epay.timestamp_fresh(params["timestamp"], int(params["timestamp"]) + 300)


@pytest.mark.parametrize(("client", "notify"), notifies_of("dujiaoka-vpay"))
def test_vmq_notify_cases(client: str, notify: dict[str, Any]) -> None:
    """Our V免签 notify (price = asked, reallyPrice = paid) equals the accepted good vector; refused ones differ."""
    p = dict(notify["params"])
    order = VECTORS["clients"]["dujiaoka-vpay"]["notify_order"]
    ours = vmq.notify_params(
        pay_id=order["payId"], param=order["order_sn"], pay_type="2", price="10", really_price="9.99", key=key()
    )
    if notify["case"] == "good":
        assert notify["accepted"] and ours == p
    elif notify["case"] == "price_as_10.00":
        again = vmq.notify_params(
            pay_id=order["payId"], param=order["order_sn"], pay_type="2", price="10.00", really_price="9.99", key=key()
        )
        assert again == p
    else:
        assert not notify["accepted"] and ours != p


@pytest.mark.parametrize(
    ("pay_type", "channel"),
    [("alipay", "alipay"), ("wxpay", "wechat"), ("bank", "unionpay"), (None, "any"), ("", "any")],
)
def test_types(pay_type: str | None, channel: str) -> None:
    """Shop types map to our channels; none lets the payer pick."""
    assert epay.channel_for_type(pay_type) == channel


@pytest.mark.parametrize("bad", ["qqpay", "ALIPAY", "alipay ", "x" * 500])
def test_unknown_types_are_refused(bad: str) -> None:
    """Any other type is a clear error."""
    with pytest.raises(ValueError, match="unsupported type"):
        epay.channel_for_type(bad)


@pytest.mark.parametrize("money", ["10", "10.5", "10.00", "0.01"])
def test_money_strings(money: str) -> None:
    """PHP float strings parse to fen."""
    assert epay.money_fen(money) == {"10": 1000, "10.5": 1050, "10.00": 1000, "0.01": 1}[money]


@pytest.mark.parametrize("bad", ["", "0", "0.00", "-1", "1e3", "10.505", " 10", "10,5", "NaN", "１０"])
def test_bad_money(bad: str) -> None:
    """Anything but a positive amount with at most two decimals is refused."""
    with pytest.raises(ValueError):
        epay.money_fen(bad)


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "订单1", "a/b", "a&b"])
def test_bad_out_trade_no(bad: str) -> None:
    """Merchant order numbers are 1..64 of A-Z a-z 0-9 . _ | -."""
    with pytest.raises(ValueError):
        epay.check_out_trade_no(bad)


def test_canonical_skips_blank_and_sign_fields() -> None:
    """Empty and whitespace-only values and sign/sign_type stay out; raw values are not URL-encoded."""
    assert epay.canonical({"b": "2", "a": "x y+z", "c": " ", "d": "", "sign": "s", "sign_type": "MD5"}) == "a=x y+z&b=2"


def test_with_query() -> None:
    """The query goes after `?` or `&`, before a fragment, URL-encoded (`+` as %2B, space as %20)."""
    assert epay.with_query("https://s/n", {"a": "1+2 3"}) == "https://s/n?a=1%2B2%203"
    assert epay.with_query("https://s/n?x=1", {"a": "b"}) == "https://s/n?x=1&a=b"
    assert epay.with_query("https://s/#/order/1", {"a": "b"}) == "https://s/?a=b#/order/1"


@pytest.mark.parametrize(
    ("body", "v1", "v2"),
    [(b"success", True, True), (b" success\n", True, True), (b"ok success", True, False), (b"fail", False, False)],
)
def test_acks(body: bytes, v1: bool, v2: bool) -> None:
    """易支付: the body contains success; V免签: the body is success, trimmed."""
    assert epay.is_ack(body) is v1 and vmq.is_ack(body) is v2


def test_compat_key_shape() -> None:
    assert epay.is_compat_key(key()) and not epay.is_compat_key(key()[:-1]) and not epay.is_compat_key("-" * 32)


def test_trim_is_phps() -> None:
    """Values are trimmed as PHP's trim() does (Laravel trims inputs with it): ASCII whitespace only."""
    fields = epay.notify_params(
        pid=1000, trade_no="ord_1", out_trade_no="A", pay_type="alipay", name="\u3000VIP \n", money="1", param=" \t"
    )
    assert fields["name"] == "\u3000VIP" and "param" not in fields
    assert epay.canonical({"a": "\u3000", "b": "\x0b"}) == "a=\u3000"


_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_VALUES = st.text(max_size=40).filter(lambda v: "\x00" not in v)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=8), st.text(alphabet=epay.KEY_ALPHABET, min_size=32, max_size=32))
def test_sign_roundtrip_and_order_independence(params: dict[str, str], k: str) -> None:
    """Any parameter set verifies with its own sign, whatever the order the parameters came in; adding a
    non-empty parameter or changing the key breaks it; adding an empty one does not."""
    sign = epay.md5_sign(params, k)
    assert epay.md5_verify(dict(reversed(list(params.items()))), k, sign)
    assert not epay.md5_verify(params, k[::-1] + "x", sign)
    assert epay.md5_verify({**params, "Z_EMPTY": " "}, k, sign)  # upper case: never a generated name
    assert not epay.md5_verify({**params, "Z_NEW": "1"}, k, sign)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**10))
def test_php_money_parses_back(fen: int) -> None:
    """The PHP float form of any amount parses back to the same fen."""
    assert epay.money_fen(vmq.php_money(fen)) == fen
