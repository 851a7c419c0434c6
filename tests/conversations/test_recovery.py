"""Broker down when work is enqueued: the data is committed, the request succeeds, and the
periodic recovery queues the work again."""

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from conversations import recovery
from conversations.models import Attachment, Message
from conversations.services import InboundMessage, message_receive
from conversations.services.outbound import message_send
from contactcenter.enqueue import task_for
from conversations.channels.twilio_messaging import recovery as twilio_recovery
from conversations.task_names import DELIVER_MESSAGE, FETCH_TWILIO_MEDIA, PROCESS_TWILIO_INBOUND

from ..factories import make_inbox
from .twilio_helpers import MESSAGING_PATH, process_inbound_events, signed_post, sms_params

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _our_numbers(db):
    from .twilio_helpers import configure_our_numbers

    configure_our_numbers()


@pytest.fixture
def broker_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to broker: Connection refused")

    # The seam: services queue by name, and the name resolves to the registered task.
    for task in map(task_for, (DELIVER_MESSAGE, FETCH_TWILIO_MEDIA, PROCESS_TWILIO_INBOUND)):
        monkeypatch.setattr(task, "apply_async", refuse)


def test_webhook_commits_and_answers_200_while_the_broker_is_down(client, broker_down):
    params = sms_params("MM" + "1" * 32, NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME1",
                        MediaContentType0="image/png")
    response = signed_post(client, MESSAGING_PATH, params)
    assert response.status_code == 200
    process_inbound_events()  # as the recovery tick would have it done (test_twilio_inbound_processing)
    message = Message.objects.get()
    assert message.attachments.get().state == "pending"


def test_outbound_is_stored_while_the_broker_is_down(broker_down):
    conversation = message_receive(InboundMessage(inbox=make_inbox("sms"), sender_kind="phone",
                                                  sender_address="090-1234-5678", text="hi", provider_id="SM1")).conversation
    reply = message_send(conversation=conversation, agent=None, text="stored anyway")
    assert Message.objects.get(pk=reply.pk).delivery_status == "pending"


def test_recovery_requeues_stuck_outbound_and_pending_media(monkeypatch):
    inbox = make_inbox("sms")
    conversation = message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-1234-5678",
                                                  text="hi", provider_id="SM1")).conversation
    queued = []
    for task in map(task_for, (DELIVER_MESSAGE, FETCH_TWILIO_MEDIA)):
        monkeypatch.setattr(task, "apply_async", lambda args=(), kwargs=None, task=task, **_: queued.append((task.name, args)))
    reply = message_send(conversation=conversation, agent=None, text="lost task")
    fresh = message_send(conversation=conversation, agent=None, text="just queued")
    media_message = Message.objects.get(provider_id="SM1")
    Attachment.objects.create(message=media_message, filename="m", source_url="https://api.twilio.com/m", state="pending")
    queued.clear()

    old = timezone.now() - timedelta(minutes=5)
    Message.objects.filter(pk=reply.pk).update(created_at=old)
    Attachment.objects.update(created_at=old)
    assert recovery.requeue_stuck_outbound() == 1
    assert twilio_recovery.requeue_pending_media() == 1
    assert queued == [("conversations.deliver_message", (reply.pk,)), ("conversations.fetch_twilio_media", (media_message.pk,))]
    assert fresh.pk not in [args[0] for _, args in queued]


def test_recovery_jobs_run_on_the_tick():
    from contactcenter import tick

    assert {"requeue_stuck_outbound", "requeue_pending_media"} <= set(tick.registered())
