"""Provider webhooks. Thin: verify, parse, hand to a service, answer fast."""

import logging

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from .channels import twilio_messaging
from .services.messaging import twilio_inbound_receive
from .services.outbound import delivery_status_receive

logger = logging.getLogger(__name__)


def _twiml(response: MessagingResponse | None = None) -> HttpResponse:
    return HttpResponse(str(response or MessagingResponse()), content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_messaging_inbound(request: HttpRequest) -> HttpResponse:
    if not twilio_messaging.verify(request):
        logger.warning("rejected unsigned/invalid Twilio messaging webhook from %s", request.META.get("REMOTE_ADDR"))
        return HttpResponseForbidden("invalid signature")
    parsed = twilio_messaging.parse(request.POST)
    if not parsed.sid:
        return HttpResponse("MessageSid is required", status=400, content_type="text/plain")
    try:
        reply = twilio_inbound_receive(parsed=parsed, raw=dict(request.POST.items()))
    except ValidationError as exc:
        # A sender we cannot parse (a short code, an alphanumeric id): stored nowhere useful, but
        # say so clearly; Twilio retrying would not change the answer.
        logger.warning("Twilio message %s not ingested: %s", parsed.sid, exc.messages)
        return HttpResponse("; ".join(exc.messages), status=400, content_type="text/plain")
    response = MessagingResponse()
    if reply:
        response.message(reply)
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
