import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from conversations.models import Attachment, Conversation, ConversationStatus, EventType, Message, MessageKind
from conversations.services import InboundAttachment, InboundMessage, message_receive
from profiles.models import Customer

from ..factories import make_inbox

pytestmark = pytest.mark.django_db


def _sms(inbox, sid="SM" + "0" * 32, body="こんにちは", sender="090-1234-5678", **extra):
    return InboundMessage(inbox=inbox, sender_kind="phone", sender_address=sender, text=body, provider_id=sid, **extra)


def test_first_message_resolves_the_customer_and_opens_a_conversation():
    inbox = make_inbox("sms")
    result = message_receive(_sms(inbox))
    assert result.conversation_opened and not result.duplicate
    assert result.customer.identities.get().value == "+819012345678"
    conversation = result.conversation
    assert conversation.status == ConversationStatus.OPEN
    assert conversation.channel == "sms"
    assert conversation.waiting_since == result.message.created_at
    assert result.message.customer_id == conversation.customer_id


def test_replayed_provider_id_is_stored_once():
    inbox = make_inbox("sms")
    first = message_receive(_sms(inbox))
    again = message_receive(_sms(inbox, body="changed"))
    assert again.duplicate and again.message.pk == first.message.pk
    assert Message.objects.count() == 1
    assert Message.objects.get().text == "こんにちは"


def test_next_message_joins_the_open_conversation_and_snoozed_wakes_up():
    inbox = make_inbox("sms")
    first = message_receive(_sms(inbox, sid="SM1"))
    Conversation.objects.filter(pk=first.conversation.pk).update(
        status=ConversationStatus.SNOOZED, snoozed_until=timezone.now() + timedelta(days=1)
    )
    second = message_receive(_sms(inbox, sid="SM2"))
    assert second.conversation.pk == first.conversation.pk
    second.conversation.refresh_from_db()
    assert second.conversation.status == ConversationStatus.OPEN
    assert second.conversation.snoozed_until is None


def test_resolved_conversation_reopens_within_the_window_else_a_new_one_opens():
    inbox = make_inbox("sms", reopen_window_days=7)
    first = message_receive(_sms(inbox, sid="SM1"))
    Conversation.objects.filter(pk=first.conversation.pk).update(
        status=ConversationStatus.RESOLVED, resolved_at=timezone.now() - timedelta(days=2)
    )
    reopened = message_receive(_sms(inbox, sid="SM2"))
    assert reopened.conversation_reopened and reopened.conversation.pk == first.conversation.pk
    assert Message.objects.filter(kind=MessageKind.EVENT, event_type=EventType.REOPENED).count() == 1

    Conversation.objects.filter(pk=first.conversation.pk).update(
        status=ConversationStatus.RESOLVED, resolved_at=timezone.now() - timedelta(days=8)
    )
    fresh = message_receive(_sms(inbox, sid="SM3"))
    assert fresh.conversation_opened and fresh.conversation.pk != first.conversation.pk
    # Both conversations are on the one customer.
    assert Customer.objects.count() == 1


def test_automated_mail_never_reopens():
    inbox = make_inbox("email")
    mail = dict(sender_kind="email", sender_address="hanako@example.jp", text="Out of office")
    first = message_receive(InboundMessage(inbox=inbox, provider_id="<a@x>", **mail))
    Conversation.objects.filter(pk=first.conversation.pk).update(
        status=ConversationStatus.RESOLVED, resolved_at=timezone.now() - timedelta(hours=1)
    )
    auto = message_receive(InboundMessage(inbox=inbox, provider_id="<b@x>", automated=True, **mail))
    assert auto.conversation.pk == first.conversation.pk and not auto.conversation_reopened
    auto.conversation.refresh_from_db()
    assert auto.conversation.status == ConversationStatus.RESOLVED


def test_thread_reference_is_followed_only_for_the_same_customer():
    inbox = make_inbox("email")
    hanako = message_receive(InboundMessage(inbox=inbox, sender_kind="email", sender_address="hanako@example.jp",
                                            text="first", provider_id="<m1@example.jp>"))
    stranger = message_receive(InboundMessage(inbox=inbox, sender_kind="email", sender_address="evil@example.net",
                                              text="reply", provider_id="<m2@example.net>",
                                              thread_refs=["<m1@example.jp>"]))
    assert stranger.conversation.pk != hanako.conversation.pk
    assert stranger.customer.pk != hanako.customer.pk


def test_attachments_are_stored_or_marked(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    inbox = make_inbox("sms")
    result = message_receive(_sms(inbox, attachments=[
        InboundAttachment(filename="photo.jpg", content_type="image/jpeg", content=b"\xff\xd8jpeg"),
        InboundAttachment(filename="later.png", content_type="image/png", source_url="https://api.twilio.com/x"),
        InboundAttachment(filename="blocked.png", unavailable_reason="private address"),
    ]))
    stored, pending, blocked = Attachment.objects.filter(message=result.message).order_by("id")
    assert (stored.state, stored.size, stored.file.read()) == ("stored", 6, b"\xff\xd8jpeg")
    assert pending.state == "pending" and pending.source_url.endswith("/x")
    assert blocked.state == "unavailable" and blocked.state_reason == "private address"


def test_a_missing_sender_is_rejected_with_nothing_stored():
    inbox = make_inbox("sms")
    with pytest.raises(ValidationError):
        message_receive(_sms(inbox, sender=" "))
    assert Message.objects.count() == 0 and Customer.objects.count() == 0


def test_a_sender_that_does_not_parse_is_stored_with_the_address_as_it_came():
    """The provider delivered it (issue 21 §10): never refused for the sender's format."""
    result = message_receive(_sms(make_inbox("sms"), sender="not-a-phone"))
    assert result.customer.identities.get().value == "not-a-phone"
    assert Message.objects.count() == 1


def test_message_event_is_published_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("conversations.events._groups_send",
                        lambda groups, event, **_: sent.extend((group, event) for group in groups))
    inbox = make_inbox("sms")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = message_receive(_sms(inbox))
    assert sent == []  # nothing leaves before commit
    for callback in callbacks:
        callback()
    assert ("supervisors", {
        "type": "message.created", "message": result.message.pk, "conversation": result.conversation.pk,
        "customer": result.customer.pk, "channel": "sms", "direction": "inbound", "kind": "message", "seq": 1,
    }) in sent
    assert {group for group, _ in sent} == {
        f"conversation.{result.conversation.pk}", "supervisors", f"customer.{result.customer.pk}"}


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_and_same_customer_messages_yield_one_message_and_one_conversation():
    inbox = make_inbox("sms")
    barrier = threading.Barrier(6)
    errors = []

    def deliver(sid):
        from django.db import connections

        try:
            barrier.wait()
            message_receive(_sms(inbox, sid=sid))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    sids = ["SMdup"] * 3 + ["SMa", "SMb", "SMc"]
    threads = [threading.Thread(target=deliver, args=(sid,)) for sid in sids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert Message.objects.filter(kind="message").count() == 4
    assert Conversation.objects.count() == 1
    assert Customer.objects.count() == 1


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_a_retry_arriving_while_the_slow_first_delivery_is_still_committing_stores_nothing_twice(monkeypatch):
    """Twilio retries after its timeout while our first handler is still inside its transaction."""
    from conversations.services import ingest

    inbox = make_inbox("sms")
    inside, release = threading.Event(), threading.Event()
    original = ingest.notify_message_created

    def slow_notify(message, **kwargs):  # the last step inside the ingest's transaction
        original(message, **kwargs)
        if threading.current_thread().name == "first":
            inside.set()
            release.wait(10)  # the first delivery holds its transaction open

    monkeypatch.setattr(ingest, "notify_message_created", slow_notify)
    results = {}

    def deliver(name):
        from django.db import connections

        try:
            results[name] = message_receive(_sms(inbox, sid="SMslow"))
        finally:
            connections.close_all()

    first = threading.Thread(target=deliver, args=("first",), name="first")
    first.start()
    assert inside.wait(10)
    retry = threading.Thread(target=deliver, args=("retry",), name="retry")
    retry.start()
    retry.join(0.5)
    assert retry.is_alive()  # the retry waits for the first transaction instead of racing it
    release.set()
    first.join(10)
    retry.join(10)
    assert not results["first"].duplicate and results["retry"].duplicate
    assert results["retry"].message.pk == results["first"].message.pk
    assert Message.objects.filter(provider_id="SMslow").count() == 1


def test_message_after_the_customer_abandoned_opens_a_new_conversation():
    from conversations.routing.assignment import conversation_abandon

    inbox = make_inbox("sms")
    first = message_receive(_sms(inbox, sid="SMa1"))
    assert conversation_abandon(conversation_id=first.conversation.pk, reason="hung up")
    again = message_receive(_sms(inbox, sid="SMa2"))
    assert again.conversation_opened and again.conversation.pk != first.conversation.pk


def test_the_language_a_channel_knows_is_kept_for_a_customer_who_has_none():
    """A browser's or an email's language tag, reduced to what routing rules compare ("ja"), is
    kept for a new customer and for a known one with no language yet; a language already set (by
    an agent, say) is not overwritten."""
    from conversations.services.ingest import customer_language

    assert [customer_language(t) for t in ("ja-JP", "en_US", " EN ", "zh-Hant-TW", "", "x", "日本語", "12")] == \
        ["ja", "en", "en", "zh", "", "", "", ""]
    inbox = make_inbox("sms")
    first = message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-1111-2222",
                                           text="hi", provider_id="L1", sender_language="ja-JP"))
    assert Customer.objects.get(pk=first.customer.pk).language == "ja"
    known = message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-3333-4444",
                                           text="hi", provider_id="L2"))
    message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-3333-4444",
                                   text="again", provider_id="L3", sender_language="en-US"))
    assert Customer.objects.get(pk=known.customer.pk).language == "en"
    message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-3333-4444",
                                   text="again", provider_id="L4", sender_language="fr"))
    assert Customer.objects.get(pk=known.customer.pk).language == "en"
