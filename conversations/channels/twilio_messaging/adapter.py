"""Twilio SMS, MMS and WhatsApp: verify, parse, send (facts: shared/reference/twilio.md §1, §2, §4, §5)."""

import logging
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator

from contactcenter.storable import text_storable
from profiles.models import IdentityKind

from ...models import Channel, Inbox, Message
from .. import PermanentSendError, SendResult, TransientSendError
from ..twilio_client import auth_token, twilio_client

logger = logging.getLogger(__name__)

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# Extra keywords an inbox may add in its settings ("opt_out_keywords"/"opt_in_keywords").
DEFAULT_EXTRA_OPT_OUT = ("停止", "配信停止")
DEFAULT_EXTRA_OPT_IN = ("再開", "配信再開")

MAX_BODY = 1600
MAX_MEDIA = 10
# Error codes after which retrying can never help (twilio.md §1).
PERMANENT_ERROR_CODES = {21211, 21408, 21606, 21610, 21612, 21614, 30003, 30005, 30006, 30007, 63016}
OPTED_OUT_ERROR = 21610


def public_url(request: HttpRequest) -> str:
    """The URL Twilio requested: behind a TLS proxy the host and scheme we see are rewritten, so
    ``CC_PUBLIC_URL`` (when set) is what Twilio signed."""
    if settings.CC_PUBLIC_URL:
        return settings.CC_PUBLIC_URL + request.get_full_path()
    return request.build_absolute_uri()


def verify(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    # Every received parameter goes to the validator, known or not (Twilio adds fields freely).
    return RequestValidator(auth_token()).validate(public_url(request), request.POST, signature)


@dataclass(frozen=True)
class ParsedInbound:
    channel: str  # sms or whatsapp
    sid: str
    sender: str  # E.164 without the whatsapp: prefix (normalised later by the ingest)
    recipient: str  # our number, E.164
    body: str
    media: list[tuple[str, str]]  # (url, content type)
    keyword: str  # "opt_out" | "opt_in" | "help" | ""
    opt_out_type: str  # Twilio's OptOutType when Advanced Opt-Out matched
    profile_name: str
    extra: dict


_RAW_KEYS = frozenset({"MessageSid", "SmsSid", "SmsMessageSid"})


def _strip_whatsapp(address: str) -> tuple[str, bool]:
    if address.lower().startswith("whatsapp:"):
        return address.split(":", 1)[1], True
    return address, False


def classify_keyword(body: str, inbox: Inbox | None = None) -> str:
    """Whole-message, case-insensitive keyword match (Twilio's rule), plus the inbox's extras."""
    text = unicodedata.normalize("NFKC", body or "").strip().strip("。.!！").upper()
    if not text:
        return ""
    inbox_settings = inbox.settings if inbox is not None else {}
    extra_out = {unicodedata.normalize("NFKC", k).upper() for k in inbox_settings.get("opt_out_keywords", DEFAULT_EXTRA_OPT_OUT)}
    extra_in = {unicodedata.normalize("NFKC", k).upper() for k in inbox_settings.get("opt_in_keywords", DEFAULT_EXTRA_OPT_IN)}
    if text in OPT_OUT_KEYWORDS or text in extra_out:
        return "opt_out"
    if text in OPT_IN_KEYWORDS or text in extra_in:
        return "opt_in"
    if text in HELP_KEYWORDS:
        return "help"
    return ""


def parse(post, inbox: Inbox | None = None) -> ParsedInbound:
    """The common inbound shape of a webhook's parameters. Its texts come without NUL, which
    PostgreSQL refuses (contactcenter.storable): the raw parameters are kept apart, as posted.
    The MessageSid is left as posted, for the webhook to refuse one that is not Twilio's."""
    post = {key: post.get(key) if key in _RAW_KEYS else text_storable(post.get(key)) for key in post.keys()}
    sender, from_whatsapp = _strip_whatsapp(post.get("From", ""))
    recipient, _ = _strip_whatsapp(post.get("To", ""))
    try:
        count = min(int(post.get("NumMedia", "0") or 0), MAX_MEDIA)
    except ValueError:
        count = 0
    media = [(post.get(f"MediaUrl{i}", ""), post.get(f"MediaContentType{i}", "")) for i in range(count)]
    opt_out_type = (post.get("OptOutType") or "").upper()
    keyword = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}.get(opt_out_type) or classify_keyword(
        post.get("Body", ""), inbox
    )
    known = {"MessageSid", "SmsSid", "SmsMessageSid", "From", "To", "Body", "NumMedia", "AccountSid"}
    extra = {key: post.get(key) for key in post.keys() if key not in known and not key.startswith("Media")}
    return ParsedInbound(
        channel=Channel.WHATSAPP if from_whatsapp else Channel.SMS,
        sid=post.get("MessageSid") or post.get("SmsMessageSid") or post.get("SmsSid") or "",
        sender=sender, recipient=recipient, body=post.get("Body", ""), media=[m for m in media if m[0]],
        keyword=keyword, opt_out_type=opt_out_type, profile_name=post.get("ProfileName", ""), extra=extra,
    )


def sender_kind(channel: str) -> str:
    return IdentityKind.WHATSAPP if channel == Channel.WHATSAPP else IdentityKind.PHONE


def provider_address(channel: str, e164: str) -> str:
    return f"whatsapp:{e164}" if channel == Channel.WHATSAPP else e164


def status_callback_url() -> str:
    base = settings.CC_PUBLIC_URL or "http://127.0.0.1:8000"
    return f"{base}/webhooks/twilio/messaging/status/"


def send(message: Message, *, to: str, from_: str) -> SendResult:
    """Hand one stored message to Twilio. Never called inside a transaction."""
    client = twilio_client()
    media = [a.source_url for a in message.attachments.all() if a.source_url][:MAX_MEDIA]
    kwargs = {"to": provider_address(message.channel, to), "from_": provider_address(message.channel, from_),
              "status_callback": status_callback_url()}
    template = message.metadata.get("template") if message.metadata else None
    if template:
        kwargs["content_sid"] = template["content_sid"]
        if template.get("variables"):
            import json

            kwargs["content_variables"] = json.dumps(template["variables"], ensure_ascii=False)
    else:
        kwargs["body"] = message.text
    if media:
        kwargs["media_url"] = media
    try:
        created = client.messages.create(**kwargs)
    except TwilioRestException as exc:
        code = int(exc.code or 0)
        if code in PERMANENT_ERROR_CODES or (400 <= int(exc.status or 0) < 500 and exc.status != 429):
            raise PermanentSendError(f"Twilio {code or exc.status}: {exc.msg}", code=str(code or exc.status)) from exc
        raise TransientSendError(f"Twilio {exc.status}: {exc.msg}") from exc
    except TwilioException as exc:
        # The request may have reached Twilio before the connection broke: ambiguous.
        raise TransientSendError(str(exc), ambiguous=True) from exc
    except OSError as exc:
        raise TransientSendError(str(exc), ambiguous=True) from exc
    return SendResult(provider_id=created.sid, status=created.status or "queued")


def find_sent(message: Message, *, to: str, from_: str, since) -> str | None:
    """After an ambiguous failure, ask Twilio whether the message went out anyway (same To, From
    and body since the attempt began); its sid if so. Prevents a double SMS on retry."""
    from datetime import datetime

    client = twilio_client()
    if isinstance(since, str):
        since = datetime.fromisoformat(since)
    try:
        for candidate in client.messages.list(
            to=provider_address(message.channel, to), from_=provider_address(message.channel, from_),
            date_sent_after=since, limit=50,
        ):
            if (candidate.body or "") == message.text:
                return candidate.sid
    except (TwilioException, OSError) as exc:
        logger.warning("could not reconcile message %s with Twilio", message.pk, exc_info=True)
        # Not knowing yet is transient: the task retries the check (bounded), never sends blindly.
        raise TransientSendError(f"could not ask Twilio whether it was sent: {exc}", ambiguous=True) from exc
    return None


def validate_outbound(text: str) -> None:
    """The channel registry's check of a body before it is stored (SMS/WhatsApp's length limit)."""
    if len(text) > MAX_BODY:
        raise ValidationError(
            "SMS/WhatsApp messages are limited to %(limit)s characters (this one has %(size)s).",
            code="body_too_long", params={"limit": MAX_BODY, "size": len(text)},
        )
