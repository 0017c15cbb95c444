"""The payer's language: Chinese unless the browser prefers English; the page texts in both."""

from __future__ import annotations

__all__ = ["LANGUAGES", "TEXT", "pick_language"]

LANGUAGES = ("zh", "en")


def pick_language(accept_language: str | None, override: str | None = None) -> str:
    """The language, "zh" or "en": `override` (?lang=) if valid, else whichever of the two the
    browser ranks higher in Accept-Language, else zh.

    >>> pick_language("en-US,en;q=0.9,zh;q=0.8")
    'en'
    >>> pick_language("zh-CN,en;q=0.5"), pick_language("fr, en;q=0.1"), pick_language("de")
    ('zh', 'en', 'zh')
    """
    if override in LANGUAGES:
        return str(override)
    best: tuple[float, int, str] | None = None
    for position, part in enumerate((accept_language or "")[:512].split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if q <= 0:
            continue
        key = (-q, position, primary)
        if best is None or key < best:
            best = key
    return best[2] if best else "zh"


TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "lang_attr": "zh-CN",
        "title": "付款",
        "shop": "商户",
        "pay": "请支付",
        "paid_amount": "已支付",
        "amount": "订单金额",
        "differs": "请准确支付 ¥{pay}，不是 ¥{asked}",
        "differs_why": "多一分少一分都无法自动确认：这个金额就是我们认出你这笔付款的方式。",
        "exact_why": "请按此金额付款，一分不差。",
        "scan_alipay": "打开支付宝，扫一扫",
        "scan_wechat": "打开微信，扫一扫",
        "scan_unionpay": "打开云闪付，扫一扫",
        "open_alipay": "打开支付宝付款",
        "save_qr": "保存二维码图片",
        "wechat_hint": "在本机付款：长按二维码或截屏保存图片，打开微信 → 扫一扫 → 右上角「相册」，选中这张图片。",
        "qr_label": "收款二维码",
        "pick": "选择付款方式",
        "time_left": "剩余时间",
        "expires_in": "剩余 {left}",
        "waiting": "等待付款…付款后本页会自动更新，请勿关闭。",
        "paid": "已收到付款",
        "paid_hint": "谢谢！正在返回商户…",
        "paid_done": "谢谢！你可以关闭本页。",
        "back": "返回商户",
        "expired": "订单已过期",
        "expired_hint": "请不要再付款。如已付款，请联系商户。",
        "closed": "订单已关闭",
        "closed_hint": "请不要再付款。如已付款，请联系商户。",
        "no_qr": "商户没有为这个订单设置收款码，请联系商户。",
        "order": "订单号",
        "status": "状态",
        "status_pending": "待付款",
        "status_paid": "已付款",
        "status_expired": "已过期",
        "status_closed": "已关闭",
        "not_found": "找不到这个订单",
        "not_found_hint": "链接可能有误或已失效。请回到商户重新下单。",
        "too_many": "请求太频繁，请稍后再试。",
        "other_lang": "English",
        "other_lang_code": "en",
        "alipay": "支付宝",
        "wechat": "微信支付",
        "unionpay": "云闪付",
        "any": "任意方式",
    },
    "en": {
        "lang_attr": "en",
        "title": "Payment",
        "shop": "Shop",
        "pay": "Amount to pay",
        "paid_amount": "Amount paid",
        "amount": "Order amount",
        "differs": "Pay exactly ¥{pay}, not ¥{asked}",
        "differs_why": "This exact amount is how your payment is recognised: one fen more or less and it cannot be"
        " confirmed automatically.",
        "exact_why": "Pay exactly this amount.",
        "scan_alipay": "Scan with Alipay",
        "scan_wechat": "Scan with WeChat",
        "scan_unionpay": "Scan with UnionPay",
        "open_alipay": "Open Alipay to pay",
        "save_qr": "Save the QR code image",
        "wechat_hint": "Paying on this phone: long-press the QR code or take a screenshot to save it, then in WeChat"
        " open Scan → Album (top right) and pick that image.",
        "qr_label": "Payment QR code",
        "pick": "Choose how to pay",
        "time_left": "Time left",
        "expires_in": "{left} left",
        "waiting": "Waiting for your payment… this page updates by itself; keep it open.",
        "paid": "Payment received",
        "paid_hint": "Thank you! Taking you back to the shop…",
        "paid_done": "Thank you! You may close this page.",
        "back": "Back to the shop",
        "expired": "This order has expired",
        "expired_hint": "Do not pay now. If you already paid, contact the shop.",
        "closed": "This order was closed",
        "closed_hint": "Do not pay now. If you already paid, contact the shop.",
        "no_qr": "The shop has no payment QR code for this order; contact the shop.",
        "order": "Order",
        "status": "Status",
        "status_pending": "Waiting for payment",
        "status_paid": "Paid",
        "status_expired": "Expired",
        "status_closed": "Closed",
        "not_found": "Order not found",
        "not_found_hint": "The link may be wrong or no longer valid. Go back to the shop and order again.",
        "too_many": "Too many requests; try again in a moment.",
        "other_lang": "中文",
        "other_lang_code": "zh",
        "alipay": "Alipay",
        "wechat": "WeChat Pay",
        "unionpay": "UnionPay",
        "any": "Any",
    },
}
