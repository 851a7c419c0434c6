"""Celery tasks of the voice channel: the REST requests that follow an agent taking a call."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="conversations.voice_connect_call", autoretry_for=(OSError,), retry_backoff=True, max_retries=3,
             ignore_result=True)
def voice_connect_call(call_id: int, agent_id: int) -> str:
    """Redirect the waiting caller's call to our connect TwiML (it leaves the ``<Enqueue>`` and is
    put through to the agent: ``twiml.call_connect_twiml``)."""
    from twilio.base.exceptions import TwilioRestException

    from ...models import CALL_FINAL_STATUSES, Call
    from ..twilio_client import twilio_client
    from . import twiml

    call = Call.objects.filter(pk=call_id).first()
    if call is None or call.status in CALL_FINAL_STATUSES:
        return "ended"
    url = twiml.public_base() + twiml.with_query(twiml.CONNECT, call=call.pk, agent=agent_id)
    try:
        twilio_client().calls(call.call_sid).update(url=url, method="POST")
    except TwilioRestException as exc:
        # 21220: the call is no longer in progress (the caller hung up meanwhile): nothing to connect.
        logger.info("could not redirect call %s to agent %s: %s", call.call_sid, agent_id, exc.msg)
        return "refused"
    return "redirected"


@shared_task(name="conversations.voice_call_back", autoretry_for=(OSError,), retry_backoff=True, max_retries=3,
             ignore_result=True)
def voice_call_back(call_id: int, agent_id: int) -> str:
    """Call back the customer who kept their place: when they answer, Twilio asks our connect
    TwiML, which tells them why we call and puts them through to the agent."""
    from ...models import Call
    from ..twilio_client import twilio_client
    from . import twiml
    from .calls import callback_started

    call = Call.objects.select_related("conversation__inbox").filter(pk=call_id).first()
    if call is None or call.callback_call_sid or not call.callback_number:
        return "skipped"
    base = twiml.public_base()
    created = twilio_client().calls.create(
        to=call.callback_number, from_=call.conversation.inbox.address,
        url=base + twiml.with_query(twiml.CONNECT, call=call.pk, agent=agent_id), method="POST",
        status_callback=base + twiml.STATUS, status_callback_method="POST",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    callback_started(call_id=call.pk, callback_sid=created.sid, agent_id=agent_id)
    return created.sid
