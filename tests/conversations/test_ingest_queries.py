"""The ingest's cost per message (bench/routing runs it 20 times a second beside the routers): a
fixed number of statements for the two common cases. Each statement saved here is CPU the web
process does not take from the workers on a shared machine.

The counts include the transaction's BEGIN and COMMIT (a savepoint and its release inside a test's
own transaction) and the savepoint around a new identity."""

import pytest
from conversations.models import ConversationStatus, Message, Queue
from conversations.services import InboundMessage, message_receive

from ..factories import make_inbox

pytestmark = pytest.mark.django_db

def _sms(inbox, sid, sender="090-1234-5678"):
    return InboundMessage(inbox=inbox, sender_kind="phone", sender_address=sender, text="hello", provider_id=sid)


def test_a_new_customers_first_message_takes_thirteen_statements(django_assert_num_queries):
    """Replay check (the id alone), BEGIN, the address and its sibling in one read, SAVEPOINT, the
    customer, the identity, RELEASE, the routing rules and the queue (the inbox's, else the default
    one, in one read: the conversation is placed as it opens, a new customer's tags not read), the
    conversation (inserted queued, with its first sequence number and waiting since now), the
    message, COMMIT. No lock of the customer just inserted, no search for conversations they cannot
    have, no UPDATE of the row just inserted. Plus one statement of the surveys app's hook on a
    customer's message (conversations.lifecycle: is this an answer to a survey we sent them)."""
    queue = Queue.objects.create(name="Support", slug="support", priority=3)
    inbox = make_inbox("sms", default_queue=queue)
    with django_assert_num_queries(13):
        result = message_receive(_sms(inbox, "SMq1"))
    conversation = result.conversation
    conversation.refresh_from_db()
    assert result.conversation_opened and result.message.seq == 1 and conversation.last_seq == 1
    assert conversation.waiting_since == result.message.created_at == conversation.last_message_at
    assert conversation.status == ConversationStatus.OPEN
    assert conversation.queue == queue and conversation.queued_at == result.message.created_at
    assert conversation.queue_reason == "inbox default" and conversation.priority == 3


def test_without_an_inbox_queue_the_default_queue_comes_from_the_same_read(django_assert_num_queries):
    queue = Queue.objects.create(name="Support", slug="support", is_default=True)
    inbox = make_inbox("sms")
    with django_assert_num_queries(13):
        result = message_receive(_sms(inbox, "SMq1"))
    result.conversation.refresh_from_db()
    assert result.conversation.queue == queue and result.conversation.queue_reason == "default queue"


def test_a_returning_customers_next_message_takes_eleven_statements(django_assert_num_queries):
    """Replay check, BEGIN, the address, its last-seen time, the customer's lock, their latest
    conversation in the inbox, the conversation's update with the message's sequence number, the
    message, COMMIT; plus the surveys app's two hooks on a customer's message
    (conversations.lifecycle: is it an answer to a survey we sent them, and a survey still
    scheduled for them is canceled)."""
    inbox = make_inbox("sms")
    first = message_receive(_sms(inbox, "SMq1"))
    with django_assert_num_queries(11):
        second = message_receive(_sms(inbox, "SMq2"))
    assert second.conversation.pk == first.conversation.pk and not second.conversation_opened
    assert list(Message.objects.filter(conversation=first.conversation).order_by("seq").values_list("seq", flat=True)) == [1, 2]
    second.conversation.refresh_from_db()
    assert second.conversation.last_seq == 2
    assert second.conversation.last_message_at == second.message.created_at
    assert second.conversation.waiting_since == first.message.created_at  # still owed an answer since the first


def test_a_replay_reads_the_stored_message_and_writes_nothing(django_assert_num_queries):
    inbox = make_inbox("sms")
    first = message_receive(_sms(inbox, "SMq1"))
    with django_assert_num_queries(2):
        again = message_receive(_sms(inbox, "SMq1"))
    assert again.duplicate and again.message.pk == first.message.pk
    assert again.message.conversation.pk == first.conversation.pk and again.customer.pk == first.customer.pk
