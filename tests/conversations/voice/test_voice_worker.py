"""The whole path with the real worker of the current mode (in-process embedded, or a celery
process on Redis): a call chooses an option, the worker routes it to the free agent, the agent
accepts, the worker redirects the caller's call to our conference TwiML and adds the agent's
browser to the same conference."""

import pytest
from twilio.request_validator import RequestValidator

from conversations.channels.twilio_client import auth_token
from conversations.models import Call, Offer, RecordedProviderRequest
from conversations.routing.offers import offer_accept

from .conftest import CALLER, OUR_VOICE_NUMBER, new_call_sid, verbs


def _post(client, path, params):
    signature = RequestValidator(auth_token()).compute_signature("http://testserver" + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.mark.django_db(transaction=True)
def test_a_call_is_routed_offered_accepted_and_put_through_by_the_worker(voice_line, voice_agent, client, celery_worker):
    from ...conftest import wait_for

    sid = new_call_sid()
    params = {"CallSid": sid, "AccountSid": "AC" + "d" * 32, "From": CALLER, "To": OUR_VOICE_NUMBER,
              "CallStatus": "ringing", "Direction": "inbound"}
    verbs(_post(client, "/webhooks/twilio/voice/", params))
    verbs(_post(client, "/webhooks/twilio/voice/gather/?attempt=0", {**params, "Digits": "1"}))
    call = Call.objects.get(call_sid=sid)
    offer = wait_for(lambda: Offer.objects.filter(conversation_id=call.conversation_id, status="pending").first())
    assert offer.agent == voice_agent and offer.channel == "voice"
    offer_accept(offer_id=offer.pk, agent=voice_agent)
    redirect = wait_for(lambda: RecordedProviderRequest.objects.filter(sid=sid).first())
    conference_path = redirect.params["Url"].split("://", 1)[1].split("/", 1)[1]
    (dial,) = verbs(_post(client, "/" + conference_path, params))
    assert dial.find("Conference").text == f"conversation-{call.conversation_id}"
    participant = wait_for(lambda: RecordedProviderRequest.objects.filter(uri__contains="/Participants").first())
    assert participant.params["To"] == f"client:agent_{voice_agent.pk}"
    _post(client, "/webhooks/twilio/voice/status/", {**params, "CallStatus": "completed", "CallDuration": "61"})
    call.refresh_from_db()
    assert call.outcome == "answered" and call.agent == voice_agent and call.duration == 61
