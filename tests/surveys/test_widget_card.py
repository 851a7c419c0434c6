"""Web chat: the rating card reaches the visitor's widget over its socket, is answered in place,
and is shown again on the next visit while unanswered."""

import hashlib
import secrets
from datetime import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from contactcenter.asgi import application
from conversations.models import Channel, Inbox
from profiles.models import IdentityKind
from surveys.delivery import survey_send
from surveys.models import SurveyRequest, SurveyStatus
from surveys.scheduling import survey_schedule

from ..factories import make_customer, make_identity, make_inbox

pytestmark = [pytest.mark.django_db(transaction=True)]
SITE = "https://shop.example.com"


@pytest.fixture
def widget(db) -> Inbox:
    inbox = make_inbox(Channel.WEBCHAT)
    Inbox.objects.filter(pk=inbox.pk).update(settings={"allowed_origins": [SITE]})
    return inbox


async def _hello(token):
    communicator = WebsocketCommunicator(application, "/ws/widget/?widget=widget-main",
                                         headers=[(b"host", b"cc.example.com"), (b"origin", SITE.encode())])
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "hello", "widget": "widget-main", "token": token})
    frames = [await communicator.receive_json_from(timeout=5), await communicator.receive_json_from(timeout=5)]
    assert [f["type"] for f in frames] == ["history", "status"]
    return communicator


def _prepare(widget, resolved_contact, policy, csat, token):
    policy.quiet_start, policy.quiet_end = time(0, 0), time(0, 1)
    policy.save()
    customer = make_customer("Visitor", time_zone="Asia/Tokyo")
    make_identity(customer, IdentityKind.WEB_VISITOR, hashlib.sha256(token.encode()).hexdigest(), verified=True)
    conversation = resolved_contact(Channel.WEBCHAT, customer=customer, inbox=widget)
    return survey_schedule(conversation_id=conversation.pk)


async def test_the_rating_card_arrives_and_is_answered_in_place(widget, resolved_contact, policy, csat):
    token = secrets.token_urlsafe(32)
    request = await database_sync_to_async(_prepare)(widget, resolved_contact, policy, csat, token)
    communicator = await _hello(token)
    try:
        assert await database_sync_to_async(survey_send)(request_id=request.pk) == SurveyStatus.SENT
        card = await communicator.receive_json_from(timeout=5)
        assert card["type"] == "survey" and card["kind"] == "csat" and (card["min"], card["max"]) == (1, 5)
        assert card["question"] == "How satisfied were you with our help?"
        # Someone else's token, or a score off the scale, records nothing.
        await communicator.send_json_to({"type": "survey_answer", "survey": "not-a-token", "score": 5})
        refused = await communicator.receive_json_from(timeout=5)
        assert refused["type"] == "survey_answered" and refused["ok"] is False
        await communicator.send_json_to({"type": "survey_answer", "survey": card["survey"], "score": 9})
        assert (await communicator.receive_json_from(timeout=5))["ok"] is False
        await communicator.send_json_to({"type": "survey_answer", "survey": card["survey"], "score": 5,
                                         "comment": "<b>great</b>"})
        answered = await communicator.receive_json_from(timeout=5)
        assert answered == {"type": "survey_answered", "survey": card["survey"], "ok": True, "score": 5,
                            "message": "Thank you for your answer."}
    finally:
        await communicator.disconnect()
    stored = await database_sync_to_async(lambda: SurveyRequest.objects.get(pk=request.pk).response)()
    assert stored.score == 5 and stored.via == "widget" and stored.comment == "<b>great</b>"


async def test_an_unanswered_card_is_shown_again_on_the_next_visit(widget, resolved_contact, policy, csat):
    token = secrets.token_urlsafe(32)
    request = await database_sync_to_async(_prepare)(widget, resolved_contact, policy, csat, token)
    assert await database_sync_to_async(survey_send)(request_id=request.pk) == SurveyStatus.SENT  # nobody connected
    communicator = await _hello(token)
    try:
        card = await communicator.receive_json_from(timeout=5)
        assert card["type"] == "survey" and card["conversation"] == request.conversation_id
    finally:
        await communicator.disconnect()
