"""Simulator pages and their small JSON endpoints (dev only: 404 unless CC_SIMULATOR)."""

import asyncio
import smtplib
from functools import wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from contactcenter.decoding import UndecodableInput, json_decode
from profiles import addresses

from ..models import Inbox, RecordedProviderRequest
from . import client

MAX_BODY = 1600


def simulator_only(view):
    if asyncio.iscoroutinefunction(view):
        @wraps(view)
        async def async_wrapper(request, *args, **kwargs):
            if not settings.CC_SIMULATOR:
                raise Http404("The simulator is off")
            return await view(request, *args, **kwargs)

        return async_wrapper

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.CC_SIMULATOR:
            raise Http404("The simulator is off")
        return view(request, *args, **kwargs)

    return wrapper


def _base_url(request: HttpRequest) -> str:
    return settings.CC_PUBLIC_URL or request.build_absolute_uri("/").rstrip("/")


@simulator_only
@require_GET
def index(request):
    return render(request, "simulator/index.html")


@simulator_only
@require_GET
def widget_page(request):
    """A stand-in for a customer's web site with the widget embedded by one script tag.
    ``?user=<id>`` plays a site that knows its signed-in user and signs the id (HMAC)."""
    from ..channels.webchat.visitors import user_signature

    inbox = Inbox.objects.filter(kind="webchat", is_active=True).order_by("id").first()
    if inbox is None:
        raise Http404("No web-chat inbox is configured: run seed_demo.")
    user_id = request.GET.get("user", "")[:100]
    context = {"widget_key": inbox.address, "locale": request.GET.get("locale", "")[:5] or None}
    if user_id:
        context |= {"user_id": user_id, "user_signature": user_signature(inbox, user_id)}
    return render(request, "widget/demo.html", context)


@simulator_only
@require_GET
def phone(request):
    inboxes = Inbox.objects.filter(kind__in=["sms", "whatsapp"], is_active=True).order_by("kind", "name")
    return render(request, "simulator/phone.html", {"inboxes": inboxes})


def _phone_messages(number: str) -> list[dict]:
    rows = RecordedProviderRequest.objects.filter(provider="twilio", to__in=[number, f"whatsapp:{number}"]).order_by(
        "-created_at")[:100]
    return [
        {"sid": row.sid, "from": row.from_address, "to": row.to, "body": row.body,
         "whatsapp": row.to.startswith("whatsapp:"), "at": row.created_at.isoformat()}
        for row in reversed(rows)
    ]


@simulator_only
@require_GET
def phone_inbox(request):
    try:
        number = addresses.normalize_phone(request.GET.get("number", ""))
    except ValidationError as exc:
        return JsonResponse({"error": exc.messages[0]}, status=400)
    return JsonResponse({"number": number, "messages": _phone_messages(number)})


def _json_object(body: bytes) -> dict:
    """The request's JSON object, decoded as every client JSON is (contactcenter.decoding)."""
    payload = json_decode(body or b"{}")
    if not isinstance(payload, dict):
        raise UndecodableInput("a JSON object is required")
    return payload


@simulator_only
@require_POST
async def phone_send(request):
    """Text our number as the simulated phone: a signed Twilio webhook to our own endpoint.

    Async on purpose: the webhook it calls is served by this same process, and a sync view
    would hold the thread that view needs."""
    try:
        payload = _json_object(request.body)
        sender = addresses.normalize_phone(payload.get("from", ""))
        to = addresses.normalize_phone(payload.get("to", ""))
    except (ValueError, ValidationError) as exc:
        message = exc.messages[0] if isinstance(exc, ValidationError) else "invalid JSON"
        return JsonResponse({"error": message}, status=400)
    body = str(payload.get("body", ""))
    if not body.strip():
        return JsonResponse({"error": "Type a message first."}, status=400)
    if len(body) > MAX_BODY:
        return JsonResponse({"error": f"SMS bodies are limited to {MAX_BODY} characters."}, status=400)
    params = client.twilio_sms_params(sender=sender, to=to, body=body, whatsapp=bool(payload.get("whatsapp")))
    base = await sync_to_async(_base_url)(request)
    try:
        response = await asyncio.to_thread(client.post_signed, base, client.MESSAGING_PATH, params)
    except OSError as exc:
        return JsonResponse({"error": f"Could not reach the webhook: {exc}"}, status=502)
    return JsonResponse({"sid": params["MessageSid"], "status": response.status_code,
                         "twiml": response.text[:2000]}, status=200 if response.ok else 502)


@simulator_only
@require_GET
def email_client(request):
    inboxes = Inbox.objects.filter(kind="email", is_active=True).order_by("name")
    return render(request, "simulator/email.html", {
        "inboxes": inboxes, "smtp": f"{settings.CC_SMTP_HOST}:{settings.CC_SMTP_PORT}",
    })


@simulator_only
@require_GET
def email_inbox(request):
    """Mail we sent to this address (recorded by the email backend when no SMTP server is set)."""
    try:
        address = addresses.normalize_email(request.GET.get("address", ""))
    except ValidationError as exc:
        return JsonResponse({"error": exc.messages[0]}, status=400)
    rows = RecordedProviderRequest.objects.filter(provider="email", to__icontains=address).order_by("-created_at")[:50]
    return JsonResponse({"address": address, "messages": [
        {"from": row.from_address, "subject": row.params.get("subject", ""), "body": row.body,
         "message_id": row.params.get("message_id", ""), "at": row.created_at.isoformat()}
        for row in reversed(rows)
    ]})


@simulator_only
@require_POST
async def email_send(request):
    """Send a mail as the customer through our SMTP listener (async: in the embedded default the
    listener runs in this process, and its handler needs the thread a sync view would hold)."""
    try:
        payload = _json_object(request.body)
        sender = addresses.normalize_email(payload.get("from", ""))
        to = addresses.normalize_email(payload.get("to", ""))
    except (ValueError, ValidationError) as exc:
        message = exc.messages[0] if isinstance(exc, ValidationError) else "invalid JSON"
        return JsonResponse({"error": message}, status=400)
    subject = str(payload.get("subject", ""))[:300]
    body = str(payload.get("body", ""))
    if not body.strip():
        return JsonResponse({"error": "Write a message first."}, status=400)
    try:
        message_id = await asyncio.to_thread(
            client.send_email, host=settings.CC_SMTP_HOST, port=settings.CC_SMTP_PORT, sender=sender, to=to,
            subject=subject or body[:40], body=body, in_reply_to=str(payload.get("in_reply_to", ""))[:300],
            display_name=str(payload.get("name", ""))[:100],
        )
    except (OSError, smtplib.SMTPException) as exc:
        return JsonResponse({"error": f"The SMTP listener at {settings.CC_SMTP_HOST}:{settings.CC_SMTP_PORT} "
                                      f"did not take the mail: {exc}"}, status=502)
    return JsonResponse({"message_id": message_id})
