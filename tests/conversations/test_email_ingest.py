"""email_receive and POST /webhooks/email/: one ingest path, raw kept, threading, automation, spoofing."""

from pathlib import Path

import pytest
from django.test import override_settings

from conversations.models import (
    Attachment,
    AttachmentState,
    Channel,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    Message,
    RawEmail,
)
from conversations.channels.email.ingest import EmailTooLarge, NoInboxForRecipient, email_receive
from profiles.models import Customer, IdentityKind, MergeSuggestion
from tests.factories import make_conversation, make_customer, make_identity, make_inbox, make_message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"
OUR_ID = "cc.1.ourtoken@shop.example.jp"
SECRET = "s3cret-email-webhook"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def inbox(db):
    return make_inbox(Channel.EMAIL)


@pytest.fixture
def hanako(db):
    customer = make_customer("Hanako Yamada")
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp", verified=True)
    return customer


@pytest.fixture
def our_thread(inbox, hanako):
    """Hanako's conversation holding our outbound mail with Message-ID OUR_ID."""
    conversation = make_conversation(hanako, inbox, subject="Your order")
    make_message(conversation, "Your order has shipped.", direction=Direction.OUTBOUND, provider_id=OUR_ID)
    return conversation


# --- raw kept, Japanese decoded --------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("iso2022jp_nec.eml", "①注文番号 Ⅰ-123 の件です。"),
    ("iso2022jp_no_charset.eml", "商品Ⅱについて質問があります。"),
    ("shift_jis.eml", "①数量：１０個"),
    ("euc_jp.eml", "配送日の変更"),
    ("mislabelled_utf8.eml", "返品したいです。"),
    ("mislabelled_sjis.eml", "ポイントの有効期限"),
])
def test_japanese_mail_is_stored_decoded_with_raw_bytes(inbox, name, expected):
    raw = fixture(name)
    result = email_receive(raw=raw, source="webhook")
    message = result.message
    assert expected in message.text
    assert message.inbox == inbox and message.channel == Channel.EMAIL and message.direction == Direction.INBOUND
    assert bytes(RawEmail.objects.get(message=message).raw) == raw  # byte for byte
    assert message.provider_id == message.metadata["email"]["message_id"]


def test_subject_and_attachment_names_reach_the_conversation(inbox):
    result = email_receive(raw=fixture("rfc2047_names.eml"))
    assert result.conversation.subject == "請求書の再発行"
    assert [a.filename for a in result.message.attachments.all()] == ["明細①.csv", "領収書_2024.txt"]
    assert result.customer.display_name == "鈴木 一郎"


def test_same_message_id_twice_is_one_message(inbox):
    first = email_receive(raw=fixture("euc_jp.eml"), source="smtp")
    again = email_receive(raw=fixture("euc_jp.eml"), source="imap")
    assert again.duplicate and again.message.pk == first.message.pk
    assert Message.objects.filter(direction=Direction.INBOUND).count() == 1
    assert RawEmail.objects.count() == 1


def test_message_id_reused_by_another_sender_is_not_swallowed(inbox):
    email_receive(raw=fixture("euc_jp.eml"))
    forged = fixture("euc_jp.eml").replace(b"From: saburo@example.jp", b"From: other@example.jp")
    result = email_receive(raw=forged)
    assert not result.duplicate
    assert result.message.provider_id.startswith("euc-1@mail.example.jp#sha256:")


def test_missing_message_id_uses_the_hash_of_the_raw(inbox):
    raw = b"From: a@example.jp\r\nTo: support@shop.example.jp\r\nSubject: hi\r\n\r\nhello\r\n"
    result = email_receive(raw=raw)
    assert result.message.provider_id.startswith("sha256:")
    assert email_receive(raw=raw).duplicate


def test_recipient_picks_the_inbox(inbox):
    sales = make_inbox(Channel.EMAIL, address="sales@shop.example.jp")
    raw = fixture("euc_jp.eml").replace(b"To: support@shop.example.jp", b"To: Sales <SALES@shop.example.jp>")
    assert email_receive(raw=raw).message.inbox == sales
    plus = fixture("list_mail.eml").replace(b"To: support@shop.example.jp", b"To: support+t42@shop.example.jp")
    assert email_receive(raw=plus).message.inbox == inbox
    with pytest.raises(NoInboxForRecipient):
        email_receive(raw=fixture("euc_jp.eml").replace(b"To: support@", b"To: nobody@"))


# --- quoted history --------------------------------------------------------------------------

def test_quote_offset_stored_full_body_kept(inbox):
    message = email_receive(raw=fixture("gmail_reply_ja.eml")).message
    start = message.metadata["quote_start"]
    assert message.text[:start].strip() == "ありがとうございます。承知しました。"
    assert "ご注文の商品を発送しました。" in message.text[start:]
    assert message.metadata["quote_marker"].startswith("2024年1月15日")


def test_signature_phone_suggests_a_merge_only_from_own_text(inbox, customer):
    # `customer` owns +819012345678; the Gmail reply's own text names 090-1234-5678, and its quoted
    # history names our own 03 number, which must not count.
    result = email_receive(raw=fixture("gmail_reply_en.eml"))
    suggestion = MergeSuggestion.objects.get(reason="signature_phone")
    assert suggestion.customer == customer and suggestion.candidate == result.customer
    assert result.customer != customer  # a suggestion, never a link


# --- threading -------------------------------------------------------------------------------

def test_reply_threads_into_our_conversation(our_thread):
    make_conversation(our_thread.customer, our_thread.inbox, subject="newer, other topic")
    result = email_receive(raw=fixture("gmail_reply_en.eml"))
    assert result.conversation == our_thread


def test_stranger_quoting_another_customers_thread_opens_their_own(our_thread):
    raw = fixture("gmail_reply_en.eml").replace(b"Hanako Yamada <hanako@example.jp>", b"Eve <eve@example.net>")
    result = email_receive(raw=raw)
    assert result.conversation != our_thread and result.conversation_opened
    assert result.customer != our_thread.customer
    assert our_thread.messages.count() == 1


# --- auto-replies, bounces, list mail --------------------------------------------------------

def test_out_of_office_is_stored_never_reopens(inbox):
    kenji = make_customer("Kenji")
    make_identity(kenji, IdentityKind.EMAIL, "kenji@example.co.jp", verified=True)
    resolved = make_conversation(kenji, inbox, status=ConversationStatus.RESOLVED)
    make_message(resolved, "invoice", direction=Direction.OUTBOUND, provider_id=OUR_ID)
    result = email_receive(raw=fixture("out_of_office.eml"))
    resolved.refresh_from_db()
    assert resolved.status == ConversationStatus.RESOLVED and resolved.waiting_since is None
    assert result.message.metadata["automated"]
    assert not result.conversation_reopened


def test_list_mail_from_a_stranger_opens_nothing_active(inbox):
    result = email_receive(raw=fixture("list_mail.eml"))
    assert result.conversation.status == ConversationStatus.RESOLVED
    assert "precedence: list" in result.message.metadata["automated"]


def test_bounce_is_stored_and_marks_our_message_undelivered(our_thread):
    ours = our_thread.messages.get(provider_id=OUR_ID)
    Message.objects.filter(pk=ours.pk).update(delivery_status=DeliveryStatus.SENT)
    result = email_receive(raw=fixture("bounce.eml"), envelope_from="")
    assert result.message.metadata["bounce"]["status"] == "5.1.1"
    ours.refresh_from_db()
    assert ours.delivery_status == DeliveryStatus.UNDELIVERED
    assert Conversation.objects.get(pk=result.conversation.pk).status == ConversationStatus.RESOLVED
    our_thread.refresh_from_db()
    assert our_thread.waiting_since is None


# --- spoofed or ambiguous From ---------------------------------------------------------------

def test_known_from_with_foreign_reply_to_is_kept_off_the_customers_history(our_thread):
    raw = fixture("spoof_reply_to.eml").replace(b"Subject:", b"In-Reply-To: <" + OUR_ID.encode() + b">\r\nSubject:")
    result = email_receive(raw=raw)
    assert result.customer != our_thread.customer
    assert result.conversation != our_thread
    assert not result.customer.identities.filter(kind=IdentityKind.EMAIL).exists()  # nobody to reply to yet
    assert result.message.metadata["unverified_sender"]["reply_to"] == ["attacker@evil.example"]
    suggestion = MergeSuggestion.objects.get(reason="email_unverified_from")
    assert suggestion.customer == our_thread.customer and suggestion.candidate == result.customer
    assert our_thread.messages.count() == 1


def test_failed_authentication_from_our_mta_is_kept_off(our_thread):
    raw = b"Authentication-Results: mx.shop.example.jp; spf=fail; dkim=none; dmarc=fail\r\n" + fixture("gmail_reply_en.eml")
    with override_settings(CC_EMAIL_AUTHSERV_IDS=["mx.shop.example.jp"]):
        result = email_receive(raw=raw)
    assert result.conversation != our_thread and result.customer != our_thread.customer
    assert result.message.metadata["identity_doubts"] == ["authentication_failed"]


def test_unknown_from_with_reply_to_is_a_new_customer_by_from(inbox):
    result = email_receive(raw=fixture("spoof_reply_to.eml").replace(b"hanako@", b"newcomer@"))
    assert result.customer.identities.get(kind=IdentityKind.EMAIL).value == "newcomer@example.jp"
    assert result.message.metadata["identity_doubts"] == ["reply_to_differs"]


def test_invalid_from_is_still_stored(inbox):
    raw = b"From: not an address\r\nTo: support@shop.example.jp\r\nSubject: x\r\nMessage-ID: <bad-from@x>\r\n\r\nhello\r\n"
    result = email_receive(raw=raw)
    assert result.message.text == "hello"
    assert RawEmail.objects.filter(message=result.message).exists()


# --- limits and broken MIME ------------------------------------------------------------------

@override_settings(CC_MAX_EMAIL_BYTES=1000)
def test_oversized_mail_is_refused(inbox):
    with pytest.raises(EmailTooLarge):
        email_receive(raw=fixture("shift_jis.eml") + b"x" * 1000)
    assert not Message.objects.exists()


@override_settings(CC_MAX_ATTACHMENT_BYTES=10)
def test_oversized_attachment_kept_as_unavailable(inbox):
    result = email_receive(raw=fixture("shift_jis.eml"))
    attachment = Attachment.objects.get(message=result.message)
    assert attachment.state == AttachmentState.UNAVAILABLE
    assert "too large" in attachment.state_reason and attachment.filename == "見積書（案）.pdf"


@pytest.mark.parametrize("name, expected", [
    ("broken_no_closing_boundary.eml", "閉じ境界がありません。"),
    ("broken_bad_base64.eml", "壊れたBase64です"),
    ("broken_deep_nesting.eml", "deeply nested hello"),
])
def test_broken_mime_is_stored_best_effort_with_raw(inbox, name, expected):
    raw = fixture(name)
    result = email_receive(raw=raw)
    assert expected in result.message.text
    assert result.message.metadata["defects"]
    assert bytes(result.message.raw_email.raw) == raw


def test_hostile_html_stored_sanitized(inbox):
    message = email_receive(raw=fixture("html_xss.eml")).message
    assert "<script" not in message.html and "onerror" not in message.html and "javascript:" not in message.html
    assert "<svg" not in message.html


# --- the webhook -----------------------------------------------------------------------------

def post(client, raw: bytes, secret: str | None = SECRET, content_type="message/rfc822"):
    headers = {"HTTP_X_CC_EMAIL_SECRET": secret} if secret is not None else {}
    return client.post("/webhooks/email/", data=raw, content_type=content_type, **headers)


@override_settings(CC_EMAIL_WEBHOOK_SECRET=SECRET)
def test_webhook_accepts_raw_mail(client, inbox):
    response = post(client, fixture("iso2022jp_nec.eml"))
    assert response.status_code == 202
    body = response.json()
    message = Message.objects.get(pk=body["message"])
    assert body == {"message": message.pk, "conversation": message.conversation_id, "duplicate": False}
    assert message.metadata["source"] == "webhook"
    again = post(client, fixture("iso2022jp_nec.eml"), content_type="application/octet-stream")
    assert again.status_code == 202 and again.json()["duplicate"] is True


@override_settings(CC_EMAIL_WEBHOOK_SECRET=SECRET)
@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
def test_webhook_bad_secret_is_403_and_stores_nothing(client, inbox, secret):
    response = post(client, fixture("euc_jp.eml"), secret=secret)
    assert response.status_code == 403
    assert not Message.objects.exists()


@override_settings(CC_EMAIL_WEBHOOK_SECRET="")
def test_webhook_inbox_secret_binds_that_inbox(client, inbox):
    inbox.secret = "inbox-only-secret"
    inbox.save()
    assert post(client, fixture("euc_jp.eml"), secret=SECRET).status_code == 403
    response = post(client, fixture("euc_jp.eml"), secret="inbox-only-secret")
    assert response.status_code == 202


@override_settings(CC_EMAIL_WEBHOOK_SECRET=SECRET, CC_MAX_EMAIL_BYTES=500)
def test_webhook_oversized_is_413_with_a_clear_message(client, inbox):
    response = post(client, fixture("shift_jis.eml"))
    assert response.status_code == 413
    assert "too large" in response.json()["error"] and "500" in response.json()["error"]
    assert not Message.objects.exists()


@override_settings(CC_EMAIL_WEBHOOK_SECRET=SECRET)
def test_webhook_unknown_recipient_and_empty_body(client, inbox):
    response = post(client, fixture("euc_jp.eml").replace(b"To: support@", b"To: nobody@"))
    assert response.status_code == 422 and "No email inbox" in response.json()["error"]
    assert post(client, b"").status_code == 400
    assert post(client, b"x", content_type="application/json").status_code == 415


def test_same_name_from_the_same_company_domain_suggests_a_merge(inbox):
    colleague = make_customer("Taro Suzuki")
    make_identity(colleague, IdentityKind.EMAIL, "taro@acme-trading.co.jp", verified=True)
    raw = (b"From: Taro Suzuki <t.suzuki@acme-trading.co.jp>\r\nTo: support@shop.example.jp\r\n"
           b"Subject: Invoice\r\nMessage-ID: <x1@acme-trading.co.jp>\r\n\r\nPlease resend the invoice.\r\n")
    result = email_receive(raw=raw, inbox=inbox, source="webhook")
    suggestion = MergeSuggestion.objects.get(reason="same_name_same_domain")
    assert (suggestion.customer, suggestion.candidate) == (colleague, result.customer)
    assert suggestion.evidence["domain"] == "acme-trading.co.jp"


# --- Content-Language: the customer's language ------------------------------------------------------

def _with_language(name: str, value: bytes) -> bytes:
    return fixture(name).replace(b"MIME-Version: 1.0", b"Content-Language: " + value + b"\r\nMIME-Version: 1.0", 1)


def test_content_language_becomes_a_new_customers_language(inbox):
    result = email_receive(raw=_with_language("euc_jp.eml", b"ja-JP"))
    result.customer.refresh_from_db()
    assert result.customer.language == "ja"


def test_content_language_never_overrides_a_known_language(inbox, hanako):
    Customer.objects.filter(pk=hanako.pk).update(language="en")
    result = email_receive(raw=_with_language("gmail_reply_en.eml", b"ja"))
    assert result.customer.pk == hanako.pk
    hanako.refresh_from_db()
    assert hanako.language == "en"


def test_content_language_fills_a_known_customer_without_one(inbox, hanako):
    Customer.objects.filter(pk=hanako.pk).update(language="")
    email_receive(raw=_with_language("gmail_reply_en.eml", b"en-US"))
    hanako.refresh_from_db()
    assert hanako.language == "en"


@pytest.mark.parametrize("value", [b"und", b"<b>ja</b>", b"x-klingon"])
def test_implausible_content_language_sets_nothing(inbox, value):
    result = email_receive(raw=_with_language("euc_jp.eml", value))
    result.customer.refresh_from_db()
    assert result.customer.language == ""


def test_an_auto_replys_content_language_is_not_the_persons(inbox):
    """Out-of-office text comes from the mail server's settings, often in another language."""
    result = email_receive(raw=_with_language("out_of_office.eml", b"en-US"))
    result.customer.refresh_from_db()
    assert result.customer.language == ""


def test_content_language_routes_the_new_conversation(inbox):
    from conversations.models import Queue, RoutingRule

    japanese = Queue.objects.create(name="Japanese", slug="japanese")
    RoutingRule.objects.create(name="Japanese", expression='language == "ja"', queue=japanese)
    result = email_receive(raw=_with_language("euc_jp.eml", b"ja"))
    assert Conversation.objects.get(pk=result.conversation.pk).queue_id == japanese.pk
