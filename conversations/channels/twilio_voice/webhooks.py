"""Twilio voice webhooks under ``/webhooks/twilio/voice/``. Thin: verify the signature (403 and
nothing stored when it is wrong), find the call by its CallSid, let ``flow`` decide, answer TwiML.

Synchronous on purpose, unlike inbound SMS: what the caller hears next depends on what we store
now, and each step is a few short statements (Twilio waits up to 15 s).
"""

import logging

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from contactcenter.client_address import request_client_address

from ...models import Call
from . import adapter, calls, flow, twiml

logger = logging.getLogger(__name__)
MAX_SID = 64


def _twiml(text: str) -> HttpResponse:
    return HttpResponse(text, content_type="text/xml")


def _signed(view):
    """Refuse what Twilio did not sign (403, nothing stored), then run ``view(request)``."""
    @csrf_exempt
    @require_POST
    def wrapper(request: HttpRequest) -> HttpResponse:
        if not adapter.verify(request):
            logger.warning("rejected unsigned/invalid Twilio voice webhook %s from %s", request.path,
                           request_client_address(request))
            return HttpResponseForbidden("invalid signature")
        return view(request)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def _call_step(step):
    """A step of a call we know: the call by CallSid; an unknown call is hung up (nothing stored)."""
    @_signed
    def view(request: HttpRequest) -> HttpResponse:
        sid = request.POST.get("CallSid", "")
        call = (Call.objects.select_related("conversation__inbox", "conversation__queue").filter(call_sid=sid[:MAX_SID])
                .first() if sid else None)
        if call is None:
            return _twiml(twiml.twiml_hangup())
        return _twiml(step(call, request))

    view.__name__ = step.__name__
    return view


@_signed
def voice_incoming(request: HttpRequest) -> HttpResponse:
    sid = request.POST.get("CallSid", "")
    if not sid or len(sid) > MAX_SID or "\x00" in sid:
        return HttpResponse(f"a CallSid of at most {MAX_SID} characters is required", status=400, content_type="text/plain")
    try:
        return _twiml(flow.incoming(request.POST))
    except ValidationError as exc:
        # Not one of our voice lines (a signature proves the account, not the number).
        logger.warning("voice call %s to an unknown number: %s", sid, "; ".join(exc.messages))
        return _twiml(twiml.twiml_hangup())


def _attempt(request: HttpRequest) -> int:
    value = request.GET.get("attempt", "0")
    return min(int(value), 9) if value.isdigit() else 0


voice_gather = _call_step(lambda call, request: flow.gather(call, request.POST, attempt=_attempt(request)))
voice_wait = _call_step(lambda call, request: flow.wait(call, request.POST))
voice_wait_choice = _call_step(lambda call, request: flow.wait_choice(call, request.POST))
voice_enqueue_action = _call_step(lambda call, request: flow.enqueue_action(call, request.POST))
voice_voicemail_done = _call_step(lambda call, request: flow.voicemail_done(call, request.POST))


def _our_call(request: HttpRequest) -> Call | None:
    """The call our own URL names (``?call=<id>``, which we gave Twilio in a REST request), when
    the posted CallSid is that call's customer leg (or the callback we placed for it): a signed
    request for somebody else's call changes nothing."""
    call_id = request.GET.get("call", "")
    call = Call.objects.select_related("conversation__inbox").filter(pk=call_id).first() if call_id.isdigit() else None
    sid = request.POST.get("CallSid", "")[:MAX_SID]
    if call is None or not sid or sid not in (call.call_sid, call.callback_call_sid or None):
        return None
    return call


@_signed
def voice_conference(request: HttpRequest) -> HttpResponse:
    """Our redirect (or callback) URL once an agent took the call: the caller joins the
    conversation's conference."""
    call = _our_call(request)
    return _twiml(flow.conference_join(call, request.POST) if call else twiml.twiml_hangup())


@_signed
def voice_requeue(request: HttpRequest) -> HttpResponse:
    """Our redirect URL when the agent's leg was not answered: back to ``<Enqueue>``."""
    call = _our_call(request)
    return _twiml(flow.requeue(call, request.POST) if call else twiml.twiml_hangup())


@_signed
def voice_survey(request: HttpRequest) -> HttpResponse:
    """The post-call keypad survey (``?call=<id>[&attempt=n]``): our redirect once the agent left,
    then the Gather's answers."""
    call = _our_call(request)
    return _twiml(flow.survey(call, request.POST, attempt=_attempt(request)) if call else twiml.twiml_hangup())


@_signed
def voice_agent_leg(request: HttpRequest) -> HttpResponse:
    """Status callback of an agent's conference leg (``?conversation=<id>&agent=<id>``): answered
    keeps its CallSid; ended without an answer puts the caller back in line; the answered leg
    ending with the caller still on is the agent leaving (the survey, or the end). Each step is
    idempotent (a retried callback finds it done), and only the leg that answered counts."""
    conversation_id, agent_id = request.GET.get("conversation", ""), request.GET.get("agent", "")
    if not (conversation_id.isdigit() and agent_id.isdigit()):
        return HttpResponse("conversation and agent are required", status=400, content_type="text/plain")
    from .softphone import controls

    status, leg_sid = request.POST.get("CallStatus", ""), request.POST.get("CallSid", "")[:MAX_SID]
    if status == "in-progress" and leg_sid:
        controls.call_agent_leg_answered(conversation_id=int(conversation_id), agent_id=int(agent_id), leg_sid=leg_sid)
    elif status in ("no-answer", "busy", "failed", "canceled"):
        controls.call_agent_missed(conversation_id=int(conversation_id), agent_id=int(agent_id), leg_status=status)
    elif status == "completed":
        controls.call_agent_left(conversation_id=int(conversation_id), agent_id=int(agent_id), leg_sid=leg_sid)
    return HttpResponse(status=204)


@_signed
def voice_status(request: HttpRequest) -> HttpResponse:
    calls.call_status_update(call_sid=request.POST.get("CallSid", "")[:MAX_SID], status=request.POST.get("CallStatus", ""),
                             duration=request.POST.get("CallDuration", ""))
    return HttpResponse(status=204)


@_signed
def voice_recording(request: HttpRequest) -> HttpResponse:
    """Recording status callback: a completed voicemail becomes a timeline message."""
    if request.POST.get("RecordingStatus", "completed") == "completed":
        call = Call.objects.select_related("conversation__inbox").filter(
            call_sid=request.POST.get("CallSid", "")[:MAX_SID]).first()
        if call is not None:
            config = flow.ivr_config(call.conversation.inbox.settings)
            calls.voicemail_store(
                call_sid=call.call_sid, recording_sid=request.POST.get("RecordingSid", "")[:MAX_SID],
                recording_url=request.POST.get("RecordingUrl", ""), duration=request.POST.get("RecordingDuration", ""),
                transcript_expected=config.transcribe and call.language == "en",
            )
    return HttpResponse(status=204)


@_signed
def voice_transcription(request: HttpRequest) -> HttpResponse:
    calls.transcript_store(recording_sid=request.POST.get("RecordingSid", "")[:MAX_SID],
                           text=request.POST.get("TranscriptionText", ""),
                           status=request.POST.get("TranscriptionStatus", ""))
    return HttpResponse(status=204)
