"""The shop settings structure that `paybridge compat` prints and the dashboard shows: pure, no server."""

from __future__ import annotations

import unicodedata

from bridge.services.shop_setup import credential_fields, setup_text, shop_setups

CREDS = {
    "pid": 1234,
    "key": "Kq7ZxW2mN9pR4tY6uI8oP0aS3dF5gH1j",
    "epay_url": "https://pay.example.com/",
    "submit_url": "https://pay.example.com/submit.php",
    "vmq_url": "https://pay.example.com/vmq/1234/",
    "platform_public_key": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
    "merchant_public_key": None,
}


def test_every_field_holding_the_key_is_marked_secret() -> None:
    """The dashboard masks exactly the fields marked secret, so every field whose value is the key is marked,
    and no other is."""
    fields = [*credential_fields(CREDS), *(f for s in shop_setups(CREDS) for f in s.fields)]
    assert [f for f in fields if (f.value == CREDS["key"]) != f.secret] == []
    assert sum(f.secret for f in fields) == 6


def test_each_shop_gets_its_values() -> None:
    """dujiaoka's 易支付 driver takes the submit URL as 商户KEY, its V免签 driver the key as 商户ID and the V免签
    base (ending in /) as 商户密钥; v2board gets the base without the slash; new-api and the SDK the base with it."""
    setups = {s.id: {f.name or f.label: f.value for f in s.fields} for s in shop_setups(CREDS)}
    assert list(setups) == ["dujiaoka-epay", "dujiaoka-vmq", "v2board", "new-api", "sdk"]
    assert setups["dujiaoka-epay"] == {
        "merchant_id": "1234",
        "merchant_key": "https://pay.example.com/submit.php",
        "merchant_pem": CREDS["key"],
        "pay_check": "alipay",
        "pay_handleroute": "/pay/yipay",
    }
    assert setups["dujiaoka-vmq"]["merchant_id"] == CREDS["key"]
    assert setups["dujiaoka-vmq"]["merchant_pem"] == "https://pay.example.com/vmq/1234/"
    assert setups["v2board"]["URL"] == "https://pay.example.com" and setups["v2board"]["PID"] == "1234"
    assert setups["new-api"] == {"PayAddress": "https://pay.example.com/", "EpayId": "1234", "EpayKey": CREDS["key"]}
    assert setups["sdk"]["platform_public_key"] == CREDS["platform_public_key"]


def test_notes_come_in_both_languages() -> None:
    """Every note has English and Chinese text (the dashboard shows the one of its language)."""
    notes = [f.note for s in shop_setups(CREDS) for f in s.fields if f.note] + [
        n for s in shop_setups(CREDS) for n in s.notes
    ]
    assert notes and all(n.en.strip() and n.zh.strip() and n.en != n.zh for n in notes)
    assert notes[0].text("zh") == notes[0].zh and notes[0].text("en") == notes[0].en


def test_text_lines_up_values_by_terminal_width() -> None:
    """In the printed text the values of a section start in one terminal column, CJK labels counted as two."""

    def width(s: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)

    text = setup_text(CREDS)
    section = text.split("\n\n")[1].splitlines()[1:]  # dujiaoka 易支付, without its title
    values = ("1234", "https", "Kq7", "alipay", "/pay")
    columns = {width(line[: line.index(value)]) for line, value in zip(section, values, strict=True)}
    assert len(columns) == 1
    assert text.count(CREDS["key"]) == 6 and "  pid (商户ID):    1234\n" in text
