"""Provider webhooks. Thin: verify, parse, hand to a service, answer fast."""

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from contactcenter.client_address import request_client_address

from ...services.outbound import delivery_status_receive
from . import adapter as twilio_messaging
from .ingest import MAX_SID_LENGTH, twilio_inbound_accept

logger = logging.getLogger(__name__)


def _twiml(response: MessagingResponse | None = None) -> HttpResponse:
    return HttpResponse(str(response or MessagingResponse()), content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_messaging_inbound(request: HttpRequest) -> HttpResponse:
    """Verify, store the raw event, answer. The ingest runs in ``process_twilio_inbound``: Twilio
    gives up after 15 s and then posts again (twilio.md §1), so the answer must not wait for it."""
    if not twilio_messaging.verify(request):
        logger.warning("rejected unsigned/invalid Twilio messaging webhook from %s", request_client_address(request))
        return HttpResponseForbidden("invalid signature")
    parsed = twilio_messaging.parse(request.POST)
    if not parsed.sid or len(parsed.sid) > MAX_SID_LENGTH or "\x00" in parsed.sid:
        # Nothing to deduplicate on: not a message webhook Twilio sends.
        return HttpResponse("a MessageSid of at most %d characters is required" % MAX_SID_LENGTH, status=400,
                            content_type="text/plain")
    # A sender we cannot use (a short code, an alphanumeric id) is stored too: its processing fails
    # with the reason, kept on the event in the admin; Twilio retrying would not change anything.
    accepted = twilio_inbound_accept(parsed=parsed, raw=dict(request.POST.items()))
    response = MessagingResponse()
    if accepted is not None and accepted.reply:  # a replay (None) gets no second reply
        response.message(accepted.reply)
    return _twiml(response)


@csrf_exempt
@require_POST
def twilio_messaging_status(request: HttpRequest) -> HttpResponse:
    if not twilio_messaging.verify(request):
        return HttpResponseForbidden("invalid signature")
    delivery_status_receive(
        provider_id=request.POST.get("MessageSid", ""),
        status=request.POST.get("MessageStatus", ""),
        error_code=request.POST.get("ErrorCode", ""),
        payload=dict(request.POST.items()),
    )
    return HttpResponse(status=204)
