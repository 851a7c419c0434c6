"""conversations.channels.email.parse on the real raw-MIME corpus in tests/fixtures/email/."""

from pathlib import Path

import pytest

from conversations.channels import email as email_channel

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"


def parse(name: str, **kwargs) -> email_channel.ParsedEmail:
    return email_channel.parse((FIXTURES / name).read_bytes(), **kwargs)


# --- Japanese mail as it really arrives ------------------------------------------------------

def test_iso2022jp_with_nec_special_characters():
    raw = (FIXTURES / "iso2022jp_nec.eml").read_bytes()
    assert b"\x1b$B-!" in raw  # ① as Outlook/Becky write it: CP932 row 13 inside ESC $ B
    with pytest.raises(UnicodeDecodeError):
        raw.split(b"\r\n\r\n", 1)[1].decode("iso-2022-jp")  # the strict codec cannot read it
    parsed = parse("iso2022jp_nec.eml")
    assert parsed.subject == "①注文の件（㈱テスト）"
    assert parsed.from_name == "山田 花子"
    assert "①注文番号 Ⅰ-123 の件です。" in parsed.text
    assert "株式会社は㈱と書きます。" in parsed.text
    assert "№12 ～ ∑" in parsed.text
    assert "\ufffd" not in parsed.text


def test_iso2022jp_without_charset_parameter_and_raw_jis_subject():
    parsed = parse("iso2022jp_no_charset.eml")
    assert parsed.subject == "お問い合わせ"
    assert parsed.text == "はじめまして。\n商品Ⅱについて質問があります。"


def test_shift_jis_is_read_as_cp932_with_rfc2231_filename():
    parsed = parse("shift_jis.eml")
    assert parsed.subject == "見積もり依頼"
    assert parsed.text == "見積もりをお願いします。①数量：１０個\n～よろしくお願いします～"
    [attachment] = parsed.attachments
    assert attachment.filename == "見積書（案）.pdf"
    assert attachment.content.startswith(b"%PDF-1.4")


def test_euc_jp():
    parsed = parse("euc_jp.eml")
    assert parsed.subject == "配送について"
    assert parsed.text == "配送日の変更をお願いできますか。\n東京都千代田区"


@pytest.mark.parametrize("name, expected", [
    ("mislabelled_utf8.eml", "返品したいです。サイズが合いませんでした。"),
    ("mislabelled_sjis.eml", "ポイントの有効期限を教えてください。"),
])
def test_mislabelled_charset(name, expected):
    parsed = parse(name)
    assert parsed.text == expected
    if name == "mislabelled_utf8.eml":
        assert parsed.subject == "返品"


def test_rfc2047_q_subject_names_and_filenames():
    parsed = parse("rfc2047_names.eml")
    assert parsed.subject == "請求書の再発行"  # two Q words folded over two lines
    assert parsed.from_name == "鈴木 一郎"
    names = [a.filename for a in parsed.attachments]
    assert names == ["明細①.csv", "領収書_2024.txt"]  # RFC 2047 in a quoted name; RFC 2231 continuation
    assert parsed.attachments[0].content == b"a,b\n1,2\n"


# --- quoted history --------------------------------------------------------------------------

@pytest.mark.parametrize("name, own, marker", [
    ("gmail_reply_en.eml", "Thanks, that works for me.\nCall me on 090-1234-5678 if needed.",
     "On Mon, Jan 15, 2024 at 10:30 AM Support <"),
    ("gmail_reply_ja.eml", "ありがとうございます。承知しました。", "2024年1月15日(月) 10:30 サポート <support@shop.example.jp>:"),
    ("outlook_reply_en.eml", "Please resend the invoice.\n\nKen", "________________________________"),
    ("outlook_reply_ja.eml", "請求書を再送してください。\n\n佐藤", "差出人: サポート <support@shop.example.jp>"),
    ("iphone_reply_ja.eml", "大丈夫です！\n\niPhoneから送信", "2024/01/15 10:30、サポート <support@shop.example.jp>のメール:"),
    ("iphone_reply_en.eml", "Sounds good.\n\nSent from my iPhone",
     "> On Jan 15, 2024, at 10:30, Support <support@shop.example.jp> wrote:"),
    ("original_message_en.eml", "Still waiting for an answer.", "-----Original Message-----"),
])
def test_quoted_history_is_marked_not_removed(name, own, marker):
    parsed = parse(name)
    assert parsed.quote_start is not None
    assert parsed.own_text.strip() == own
    assert parsed.quote_marker == marker
    assert parsed.text[parsed.quote_start:].startswith(marker)
    assert len(parsed.text) > parsed.quote_start + len(marker)  # the history is still there


def test_outlook_from_block_without_rule():
    text = "OK.\n\nFrom: Support <support@shop.example.jp>\nSent: Monday\nTo: me\nSubject: Hi\n\nold"
    assert email_channel.find_quote_start(text) == (5, "From: Support <support@shop.example.jp>")


def test_a_message_without_history_has_no_marker():
    assert email_channel.find_quote_start("From: my phone I wrote this.\nThanks")[0] is None


def test_gmail_html_keeps_quote_classes_for_collapsing():
    parsed = parse("gmail_reply_en.eml")
    assert '<div class="gmail_quote">' in parsed.html
    assert "style=" not in parsed.html


# --- automated mail --------------------------------------------------------------------------

def test_bounce_is_automated_and_names_our_message():
    parsed = parse("bounce.eml")
    assert "multipart/report" in parsed.automated
    assert "empty return-path" in parsed.automated
    assert parsed.bounce["original_message_id"] == "cc.1.ourtoken@shop.example.jp"
    assert parsed.bounce["status"] == "5.1.1"
    assert parsed.bounce["action"] == "failed"


def test_out_of_office_and_list_mail_are_automated():
    assert any(r.startswith("auto-submitted") for r in parse("out_of_office.eml").automated)
    assert "precedence: list" in parse("list_mail.eml").automated


@pytest.mark.parametrize("header", [
    b"Auto-Submitted: auto-generated", b"Precedence: bulk", b"Precedence: junk", b"Precedence: auto_reply",
    b"X-Autoreply: yes", b"X-Auto-Response-Suppress: All", b"Return-Path: <>",
])
def test_each_automation_signal(header):
    raw = header + b"\r\nFrom: a@example.jp\r\nTo: support@shop.example.jp\r\nSubject: x\r\n\r\nbody\r\n"
    assert email_channel.parse(raw).automated


def test_auto_submitted_no_is_a_person():
    raw = b"Auto-Submitted: no\r\nFrom: a@example.jp\r\nSubject: x\r\n\r\nbody\r\n"
    assert email_channel.parse(raw).automated == []


def test_empty_envelope_sender_and_our_own_address_are_automated():
    raw = b"From: support@shop.example.jp\r\nSubject: x\r\n\r\nbody\r\n"
    parsed = email_channel.parse(raw, envelope_from="", own_addresses=("support@shop.example.jp",))
    assert "empty envelope sender" in parsed.automated
    assert "from our own address (loop)" in parsed.automated


# --- hostile HTML ----------------------------------------------------------------------------

def test_hostile_html_is_sanitized():
    parsed = parse("html_xss.eml")
    html = parsed.html.lower()
    for bad in ("<script", "onerror", "onclick", "onload", "javascript:", "<svg", "<iframe", "<form", "<input",
                "style=", "<style", "data:text", "tracker.example", "alert("):
        assert bad not in html, bad
    assert '<a href="https://shop.example.jp/help" rel="noopener noreferrer nofollow">help</a>' in parsed.html
    assert "Hello <b>agent</b>" in parsed.html
    assert "alert" not in parsed.text
    # The subject is returned as text; escaping it is the template's job.
    assert parsed.subject == "<script>alert('subject')</script> <img src=x onerror=alert(1)>件名"


def test_cid_images_survive_remote_images_do_not():
    html = email_channel.sanitize_html('<img src="cid:logo@x"><img src="http://t.example/p.gif">')
    assert html == '<img src="cid:logo@x"><img>'


# --- broken MIME -----------------------------------------------------------------------------

def test_no_closing_boundary():
    parsed = parse("broken_no_closing_boundary.eml")
    assert parsed.text == "閉じ境界がありません。"
    assert "CloseBoundaryNotFoundDefect" in parsed.defects
    assert parsed.attachments[0].filename == "a.png"


def test_bad_base64_gives_best_effort_text():
    parsed = parse("broken_bad_base64.eml")
    assert parsed.text.startswith("壊れたBase64です")
    assert any("Base64" in d for d in parsed.defects)


def test_deep_nesting_does_not_crash():
    parsed = parse("broken_deep_nesting.eml")
    assert "mime_too_deep" in parsed.defects
    assert "deeply nested hello" in parsed.text
    assert parsed.from_address == "taro@example.jp"


@pytest.mark.parametrize("raw", [
    b"", b"\x00\xff\xfe garbage", b"From: \r\nSubject: =?UTF-8?B?!!!?=\r\n\r\n", b"Content-Type: multipart/mixed\r\n\r\nx",
    b"From: a@b.jp\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\n\xe3\x81\x82",
])
def test_garbage_never_raises(raw):
    parsed = email_channel.parse(raw)
    assert isinstance(parsed.text, str)


def test_oversized_attachment_becomes_unavailable_with_reason():
    import base64

    payload = base64.encodebytes(b"x" * 5000).replace(b"\n", b"\r\n")
    raw = (b"From: a@example.jp\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
           b"Content-Type: text/plain\r\n\r\nsee attached\r\n--B\r\nContent-Type: application/zip\r\n"
           b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=big.zip\r\n\r\n"
           + payload + b"--B--\r\n")
    parsed = email_channel.parse(raw, max_attachment_bytes=1000)
    [attachment] = parsed.attachments
    assert attachment.content is None
    assert "too large" in attachment.unavailable_reason
    assert parsed.text == "see attached"


# --- identity doubts -------------------------------------------------------------------------

def test_reply_to_naming_someone_else_is_a_doubt():
    assert parse("spoof_reply_to.eml").identity_doubts == ["reply_to_differs"]
    assert parse("gmail_reply_en.eml").identity_doubts == []


def test_sender_header_and_several_from_are_doubts():
    raw = b"From: a@example.jp, b@example.jp\r\nSender: c@evil.example\r\n\r\nx"
    assert email_channel.parse(raw).identity_doubts == ["several_from", "sender_differs"]


def test_authentication_results_trusted_only_from_our_mta():
    raw = (b"Authentication-Results: mx.shop.example.jp; spf=fail smtp.mailfrom=evil.example; dkim=none; dmarc=fail\r\n"
           b"Authentication-Results: evil.example; dmarc=pass\r\nFrom: hanako@example.jp\r\n\r\nx")
    assert email_channel.parse(raw, trusted_authserv_ids=("mx.shop.example.jp",)).identity_doubts == [
        "authentication_failed"]
    assert email_channel.parse(raw, trusted_authserv_ids=()).identity_doubts == []
    forged = b"Authentication-Results: mx.shop.example.jp; dmarc=pass\r\n" + raw
    assert email_channel.parse(forged, trusted_authserv_ids=("mx.shop.example.jp",)).identity_doubts == []


# --- Content-Language: what the mail says about the sender's language ----------------------------

def _with_language(name: str, value: bytes) -> email_channel.ParsedEmail:
    raw = (FIXTURES / name).read_bytes().replace(b"MIME-Version: 1.0", b"Content-Language: " + value + b"\r\nMIME-Version: 1.0", 1)
    return email_channel.parse(raw)


@pytest.mark.parametrize("value, expected", [
    (b"ja-JP", "ja-JP"),
    (b"ja", "ja"),
    (b"en-US", "en-US"),
    (b"zh-Hant-TW", "zh-Hant-TW"),
    (b"ja_JP", "ja-JP"),  # a POSIX locale, as some mailers write it
    (b" en (English) , fr", "en"),  # RFC 3282: a list, comments allowed; the first tag
    (b"(none), de", "de"),
    (b"x-klingon, ja", "ja"),  # private use names no real language
])
def test_content_language_gives_the_first_plausible_tag(value, expected):
    parsed = _with_language("euc_jp.eml", value)
    assert parsed.language == expected
    assert parsed.headers["Content-Language"]  # kept with the other headers, for the record


@pytest.mark.parametrize("value", [
    b"und", b"mul", b"zxx", b"i-default", b"x-pig-latin", b"<script>alert(1)</script>", b"=?UTF-8?B?amE=?=",
    b"japanese", b"j", b"ja-JP-" + b"abcdefgh" * 5, b"", b"ja JP",
])
def test_implausible_content_language_is_no_language(value):
    assert _with_language("euc_jp.eml", value).language == ""


def test_no_content_language_is_no_language():
    assert parse("euc_jp.eml").language == ""
    assert parse("gmail_reply_en.eml").language == ""


def test_content_language_of_the_text_part_when_the_message_has_none():
    raw = (b"From: a@example.jp\r\nTo: support@shop.example.jp\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Language: ja\r\n\r\nhello\r\n--B--\r\n")
    assert email_channel.parse(raw).language == "ja"
    top = raw.replace(b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nContent-Language: en-GB\r\n")
    assert email_channel.parse(top).language == "en-GB"  # the message's own label wins
