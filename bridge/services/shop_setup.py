"""What to paste into each shop software's payment settings, from a merchant's compat credentials.

One structure, two renderings: `paybridge compat` prints it as text (`setup_text`) and the
dashboard's shop settings page shows it as tables (the compat key masked until asked for). The
field names are those the shop software's own forms show; notes come in English and Chinese.
Pure: no I/O, only the `GET /v1/compat` shape in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Field", "Note", "ShopSetup", "credential_fields", "setup_text", "shop_setups"]


@dataclass(frozen=True, slots=True)
class Note:
    """A short explanation in both languages."""

    en: str
    zh: str

    def text(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: the label the form shows, its input name (when the software names it), the value."""

    label: str
    name: str  # the form field's name ("" when only a label is shown)
    value: str
    secret: bool = False  # the compat key: the dashboard masks it until the merchant asks
    note: Note | None = None


@dataclass(frozen=True, slots=True)
class ShopSetup:
    """The settings for one shop software (one payment driver of it)."""

    id: str  # stable, for anchors and tests: dujiaoka-epay, dujiaoka-vmq, v2board, new-api, sdk
    title: str
    where: str  # where in the software's admin (its own menu names)
    fields: tuple[Field, ...]
    notes: tuple[Note, ...] = ()


def credential_fields(c: Mapping[str, Any]) -> tuple[Field, ...]:
    """pid, key and the gateway URLs (the answer of `GET /v1/compat`)."""
    return (
        Field("pid (商户ID)", "", str(c["pid"])),
        Field("key (商户密钥)", "", str(c["key"]), secret=True),
        Field("易支付 base URL", "", str(c["epay_url"])),
        Field("submit URL", "", str(c["submit_url"])),
        Field("V免签 base URL", "", str(c["vmq_url"]), note=_VMQ_SLASH),
    )


_VMQ_SLASH = Note(
    "must end with / : dujiaoka appends createOrder?... to it",
    "必须以 / 结尾：独角数卡会在后面直接拼接 createOrder?...",
)


def shop_setups(c: Mapping[str, Any]) -> tuple[ShopSetup, ...]:
    """Per shop software, the exact settings to paste."""
    pid, key = str(c["pid"]), str(c["key"])
    epay_url, submit_url, vmq_url = str(c["epay_url"]), str(c["submit_url"]), str(c["vmq_url"])
    return (
        ShopSetup(
            "dujiaoka-epay",
            "独角数卡 dujiaoka · 易支付 (yipay)",
            "配置 → 支付配置 → 新增",
            (
                Field("商户ID", "merchant_id", pid),
                Field(
                    "商户KEY",
                    "merchant_key",
                    submit_url,
                    note=Note("dujiaoka posts its form to this address", "独角数卡把支付表单提交到这个地址"),
                ),
                Field("商户密钥", "merchant_pem", key, secret=True),
                Field("支付标识", "pay_check", "alipay", note=Note("or wxpay for WeChat", "微信支付填 wxpay")),
                Field("支付处理路由", "pay_handleroute", "/pay/yipay"),
            ),
        ),
        ShopSetup(
            "dujiaoka-vmq",
            "独角数卡 dujiaoka · V免签 (vpay)",
            "配置 → 支付配置 → 新增",
            (
                Field("商户ID", "merchant_id", key, secret=True, note=Note("V免签's 通讯密钥", "即 V免签 的通讯密钥")),
                Field("商户密钥", "merchant_pem", vmq_url, note=_VMQ_SLASH),
                Field(
                    "支付标识",
                    "pay_check",
                    "vzfb",
                    note=Note("Alipay; vwx for WeChat", "支付宝；微信支付填 vwx"),
                ),
                Field("支付处理路由", "pay_handleroute", "/pay/vpay"),
            ),
        ),
        ShopSetup(
            "v2board",
            "v2board / Xboard · EPay",
            "系统配置 → 支付配置 → 添加支付方式 (EPay)",
            (
                Field("URL", "", epay_url.rstrip("/")),
                Field("PID", "", pid),
                Field("KEY", "", key, secret=True),
                Field(
                    "type",
                    "",
                    "alipay",
                    note=Note(
                        "Xboard only; or wxpay. v2board sends none: the payer picks on the checkout page",
                        "仅 Xboard 有此项，也可填 wxpay；v2board 不传类型，由付款人在收银台选择",
                    ),
                ),
            ),
        ),
        ShopSetup(
            "new-api",
            "new-api",
            "运营设置 → 支付设置",
            (
                Field("支付地址", "PayAddress", epay_url),
                Field("易支付商户ID", "EpayId", pid),
                Field("易支付商户密钥", "EpayKey", key, secret=True),
            ),
            (
                Note(
                    "new-api's own 服务器地址 must be reachable from the bridge: the notify goes there",
                    "new-api 自己的「服务器地址」必须能被 Paybridge 访问到：支付通知发往那里",
                ),
            ),
        ),
        ShopSetup(
            "sdk",
            "EpayCore SDK (彩虹易支付)",
            "$config",
            (
                Field("apiurl", "", epay_url),
                Field("pid", "", pid),
                Field("key", "", key, secret=True, note=Note("V1, MD5 signs", "V1，MD5 签名")),
                Field(
                    "platform_public_key",
                    "",
                    str(c["platform_public_key"]),
                    note=Note("V2, RSA: also register your public key", "V2，RSA：还要登记你的公钥"),
                ),
            ),
            (
                Note(
                    "V2 (RSA): register the merchant public key that matches merchant_private_key"
                    " (PUT /v1/compat, or the dashboard's shop settings page)",
                    "V2（RSA）：登记与 merchant_private_key 配对的商户公钥（PUT /v1/compat，或控制台的「商店设置」页）",
                ),
            ),
        ),
    )


def _width(text: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _lines(fields: Sequence[Field]) -> list[str]:
    """`label name: value  (note)`, labels padded so names line up and values line up."""
    label_w = max(_width(f.label) for f in fields)
    heads = [f"{f.label}{' ' * (label_w - _width(f.label))} {f.name}".rstrip() + ":" for f in fields]
    head_w = max(_width(h) for h in heads)
    return [
        f"  {h}{' ' * (head_w - _width(h))} {f.value}" + (f"  ({f.note.en})" if f.note else "")
        for h, f in zip(heads, fields, strict=True)
    ]


def setup_text(c: Mapping[str, Any]) -> str:
    """Everything above as the text `paybridge compat` prints (the key in full)."""
    out = ["Shop gateway (易支付 / V免签) credentials", *_lines(credential_fields(c))]
    for setup in shop_setups(c):
        out += ["", f"{setup.title}: {setup.where}", *_lines(setup.fields)]
        out += [f"  {note.en}" for note in setup.notes]
    out += ["", "The key is shown whenever you run this command; keep it as secret as the API key."]
    return "\n".join(out) + "\n"
