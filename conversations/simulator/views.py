"""Simulator pages and their small JSON endpoints (dev only: 404 unless CC_SIMULATOR)."""

import asyncio
import smtplib
from datetime import timedelta
from functools import wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import render
from django.utils import timezone
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
    voice_lines = Inbox.objects.filter(kind="voice", is_active=True).order_by("name")
    return render(request, "simulator/phone.html", {"inboxes": inboxes, "voice_lines": voice_lines})


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


# What the phone page may add to a step's parameters (keys pressed, words said, how it left hold …).
_CALL_FIELDS = ("Digits", "SpeechResult", "QueueResult", "CallStatus", "CallDuration")


def _call_step(base: str, payload: dict, sender: str, to: str) -> dict:
    """One step of a simulated call (in a worker thread: it posts to this same server)."""
    from . import voice

    sid = str(payload.get("call_sid") or "") or voice.new_call_sid()
    params = voice.call_params(call_sid=sid, sender=sender, to=to)
    if payload.get("direction") == "outbound-api":  # our callback, answered
        params = voice.call_params(call_sid=sid, sender=to, to=sender, direction="outbound-api")
    path = str(payload.get("path") or voice.VOICE_PATH)
    extra = {key: str(payload[key])[:300] for key in _CALL_FIELDS if payload.get(key) not in (None, "")}
    if payload.get("digits"):
        extra["Digits"] = str(payload["digits"])[:1]
    if payload.get("speech"):
        extra["SpeechResult"], extra["Confidence"] = str(payload["speech"])[:300], "0.9"
    if payload.get("hold"):
        redirect = voice.agent_redirect(sid)
        if redirect:  # an agent accepted: Twilio follows our redirect instead of the hold loop
            path = redirect
    if payload.get("connected"):
        # Talking to an agent: the call moves only when our server updates it (the agent hung up,
        # the caller is taken to the survey, or back to the queue when the agent did not answer).
        update = voice.latest_call_update(sid)
        if update.get("Status") == "completed":
            return {"call_sid": sid, "path": path, "status": 200, "verbs": [], "next": {"kind": "ended"}}
        target = voice.voice_path(str(update["Url"])) if update.get("Url") else ""
        if not target or target == voice.voice_path(path):
            return {"call_sid": sid, "path": path, "status": 204, "verbs": [], "next": {"kind": "connected", "waiting": True}}
        path = target
    if payload.get("record_callback"):
        seconds = str(payload.get("seconds") or "10")
        recording = voice.recording_params(params, seconds=min(int(seconds), 120) if seconds.isdigit() else 10)
        voice.step(base, str(payload["record_callback"]), recording)
        extra |= {"RecordingUrl": recording["RecordingUrl"], "RecordingDuration": recording["RecordingDuration"]}
    if payload.get("ring"):
        placed = voice.callback_for(sender, since=timezone.now() - timedelta(minutes=30))
        return {"call_sid": sid, "callback": {"call_sid": placed[0], "path": placed[1]} if placed else None}
    result = voice.step(base, path, {**params, **extra})
    return {"call_sid": sid, "path": path, "status": result.status, "verbs": result.verbs, "next": result.next}


@simulator_only
@require_POST
async def phone_call(request):
    """The phone page calling our voice line: one signed webhook per step (dial, a key, words, on
    hold, record, hang up), answered with the verbs to play and what the phone waits on next.
    Only our own voice webhooks are ever posted to (``voice.voice_path``)."""
    try:
        payload = _json_object(request.body)
        sender = addresses.normalize_phone(payload.get("from", ""))
        to = addresses.normalize_phone(payload.get("to", ""))
        from . import voice

        for key in ("path", "record_callback"):
            if payload.get(key):
                voice.voice_path(str(payload[key]))
    except (ValueError, ValidationError) as exc:
        message = exc.messages[0] if isinstance(exc, ValidationError) else str(exc) or "invalid JSON"
        return JsonResponse({"error": message}, status=400)
    base = await sync_to_async(_base_url)(request)
    try:
        answer = await asyncio.to_thread(_call_step_in_thread, base, payload, sender, to)
    except OSError as exc:
        return JsonResponse({"error": f"Could not reach the webhook: {exc}"}, status=502)
    return JsonResponse(answer)


def _call_step_in_thread(base, payload, sender, to):
    from django.db import close_old_connections

    try:
        return _call_step(base, payload, sender, to)
    finally:
        close_old_connections()
