"""Signing webhooks exactly as Twilio does, with the real SDK."""

from twilio.request_validator import RequestValidator

from conversations.channels.twilio_client import auth_token

MESSAGING_PATH = "/webhooks/twilio/messaging/"
STATUS_PATH = "/webhooks/twilio/messaging/status/"


def signed_post(client, path: str, params: dict, *, url_base: str = "http://testserver", signature: str | None = None,
                **extra):
    url = url_base + path
    sig = RequestValidator(auth_token()).compute_signature(url, params) if signature is None else signature
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=sig, **extra)


OUR_SMS_NUMBER = "+815012340000"
OUR_WHATSAPP_NUMBER = "+815012340001"


def configure_our_numbers() -> None:
    """The inboxes of the numbers ``sms_params`` writes to: a message to a number no inbox has
    fails (issue 21 §6), as it would for a number nobody configured."""
    from conversations.models import Inbox

    Inbox.objects.get_or_create(kind="sms", address=OUR_SMS_NUMBER, defaults={"name": "SMS"})
    Inbox.objects.get_or_create(kind="whatsapp", address=OUR_WHATSAPP_NUMBER, defaults={"name": "WhatsApp"})


def sms_params(sid: str, *, body: str = "こんにちは", sender: str = "+819012345678", to: str = "+815012340000", **extra):
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "d" * 32, "From": sender, "To": to,
            "Body": body, "NumMedia": "0", "NumSegments": "1", **extra}


def process_inbound_events() -> list[str]:
    """Run ``process_twilio_inbound`` here, eagerly, for every stored event still waiting: the
    task code the worker runs, without a worker (the webhook only stores and enqueues)."""
    from conversations.models import TwilioInboundEvent

    pending = TwilioInboundEvent.objects.filter(processed_at__isnull=True, failed_at__isnull=True).order_by("id")
    return [run_inbound_task(pk) for pk in pending.values_list("pk", flat=True)]


def run_inbound_task(event_id: int) -> str:
    """``process_twilio_inbound`` applied eagerly; its return value. (``.result``, not ``.get()``:
    Celery refuses ``.get()`` in a process where a worker thread has been started.)"""
    from conversations.channels.twilio_messaging.tasks import process_twilio_inbound

    return process_twilio_inbound.apply(args=[event_id], throw=True).result


def post_inbound(client, params: dict, **kwargs):
    """A signed inbound webhook, then its processing (see ``process_inbound_events``)."""
    response = signed_post(client, MESSAGING_PATH, params, **kwargs)
    process_inbound_events()
    return response
