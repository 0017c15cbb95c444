"""The pure `dumpsys notification` parser, over Android 7.1 and 8–15 record layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_agent.core.dumpsys import parse_dumpsys, scan_dumpsys
from device_agent.core.notifications import Notification

FIXTURES = Path(__file__).parent / "fixtures" / "sources"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def by_package(text: str) -> dict[str, Notification]:
    return {n.package: n for n in parse_dumpsys(text)}


def test_android14_record_fields() -> None:
    """Package, key, tag, when and the title come from the record, bigText over text."""
    n = by_package(fixture("dumpsys_android14_noredact.txt"))["com.eg.android.AlipayGphone"]
    assert n.key == "0|com.eg.android.AlipayGphone|1234|null|10123"
    assert n.when == 1764206400990 and n.tag is None
    assert n.title == "你已成功收款5.00元"
    assert n.text == "已转入余额 收款(元)明细\n100积分兑收钱音箱，去兑换>>"


def test_parentheses_inside_a_text_do_not_end_it() -> None:
    """A text ending in "(…)" keeps its own brackets; only the outer ones are syntax."""
    n = by_package(fixture("dumpsys_android14_noredact.txt"))["com.tencent.mm"]
    assert n.text == "[2条]微信支付: 微信支付收款12.00元(老顾客第12次消费)"


def test_inbox_lines_and_the_app_group_are_read() -> None:
    """android.textLines become lines and a `g:` group key becomes the group."""
    n = by_package(fixture("dumpsys_android14_noredact.txt"))["com.tencent.mm"]
    assert n.lines == ("微信支付收款12.00元(老顾客第12次消费)", "微信支付收款3.50元(朋友到店)")
    assert n.group == "wechat_pay"


def test_the_lock_screen_copy_is_ignored() -> None:
    """The publicNotification block's title, text and when never replace the record's own."""
    n = by_package(fixture("dumpsys_android14_noredact.txt"))["com.eg.android.AlipayGphone"]
    assert n.title != "支付宝" and n.text is not None and "新通知" not in n.text
    assert n.when != 1764206400991


def test_autogroup_summaries_are_skipped_but_counted() -> None:
    """The ranker_group summary is a record but not a notification; null texts stay None."""
    scan = scan_dumpsys(fixture("dumpsys_android14_noredact.txt"))
    assert scan.records == 4 and scan.redacted == 0
    assert all("ranker_group" not in n.key for n in scan.notifications)
    assert by_package(fixture("dumpsys_android14_noredact.txt"))["com.android.systemui"].text is None


def test_android7_record_uses_the_post_time() -> None:
    """Android 7.1 prints no when=, so mCreationTimeMs stands in; its extras are read too."""
    [n] = parse_dumpsys(fixture("dumpsys_android7_noredact.txt"))
    assert (n.title, n.text, n.when) == (
        "收钱码到账通知",
        "成功收款88.00元。100积分兑收钱音箱，去兑换>>",
        1764206500123,
    )
    assert n.key == "0|com.eg.android.AlipayGphone|1234|null|10098"


@pytest.mark.parametrize(
    ("name", "records", "redacted"),
    [("dumpsys_android14_redacted.txt", 4, 3), ("dumpsys_android7_redacted.txt", 1, 1)],
)
def test_redacted_records_are_counted_and_not_returned(name: str, records: int, redacted: int) -> None:
    """`String [length=N]` and a bare `String` mean the text was hidden: no notification, a redacted count."""
    scan = scan_dumpsys(fixture(name))
    assert (scan.records, scan.redacted, scan.notifications) == (records, redacted, ())


def test_the_verbatim_gmail_record_keeps_its_opaque_key() -> None:
    """Tags with ':' and '^' survive in key and tag; a record without extras has no texts."""
    [n] = parse_dumpsys(fixture("dumpsys_firefoxlite_gmail.txt"))
    assert n.package == "com.google.android.gm"
    assert n.key == "0|com.google.android.gm|0|gig:-900500736:^sq_ig_i_personal|10070"
    assert n.tag == "gig:-900500736:^sq_ig_i_personal" and (n.title, n.text, n.when) == (None, None, 0)


def test_a_record_repeated_later_in_the_dump_is_returned_once() -> None:
    """The enqueued list can repeat a posted record: one notification per key."""
    text = fixture("dumpsys_android7_noredact.txt")
    record = text[text.index("    NotificationRecord(") :]
    assert len(parse_dumpsys(text + "  Enqueued Notification List:\n" + record)) == 1


def test_the_header_key_is_used_when_the_body_has_none() -> None:
    """A record cut after its header still has pkg and key from the header."""
    text = (
        "    NotificationRecord(0x1: pkg=com.tencent.mm user=UserHandle{0} id=3 tag=null importance=4"
        " key=0|com.tencent.mm|3|null|10245: Notification(pri=0))\n"
    )
    [n] = parse_dumpsys(text)
    assert (n.package, n.key) == ("com.tencent.mm", "0|com.tencent.mm|3|null|10245")


@pytest.mark.parametrize("text", ["", "garbage\n", "Current Notification Manager state:\n", "NotificationRecord(\n"])
def test_text_without_records_gives_nothing(text: str) -> None:
    """Output with no readable record yields no notifications."""
    assert parse_dumpsys(text) == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "    NotificationRecord(0x1: pkg=a user=UserHandle{0} id=1 tag=null key=0|a|1|null|1: Notification())",
                "      key=0|a|1|null|1",
                "            when=17",
                "            extras={",
                "                android.title=String (t(",
                "                android.text=String [length=3]",
                "x)",
                "            }",
                "      publicNotification=",
                "}",
                "                android.textLines=CharSequence[] (1)",
                "                  [0] line",
                "      mCreationTimeMs=5",
            ]
        ),
        max_size=30,
    )
)
def test_any_arrangement_of_record_lines_parses_without_error(lines: list[str]) -> None:
    """Truncated or shuffled dumps never make the parser raise."""
    scan = scan_dumpsys("\n".join(lines))
    assert scan.redacted <= scan.records
