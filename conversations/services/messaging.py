"""Twilio SMS/MMS/WhatsApp inbound: consent keywords, media, then the common ingest."""

from django.db import IntegrityError, transaction

from profiles.models import ConsentStatus

from ..channels import twilio_messaging
from ..enqueue import enqueue_on_commit
from ..models import Channel, Inbox
from .ingest import InboundAttachment, InboundMessage, message_receive

JA_OPT_OUT_REPLY = "配信を停止しました。再開するには START と返信してください。"


def inbox_for_number(*, channel: str, address: str) -> Inbox:
    """The inbox a Twilio number belongs to. A signed webhook for a number nobody configured yet
    still proves it is our account's number: create the inbox rather than drop the message."""
    inbox = Inbox.objects.filter(kind=channel, address=address).first()
    if inbox is not None:
        return inbox
    try:
        with transaction.atomic():
            return Inbox.objects.create(kind=channel, address=address, name=f"{Channel(channel).label} {address}")
    except IntegrityError:
        return Inbox.objects.get(kind=channel, address=address)


def twilio_inbound_receive(*, parsed: twilio_messaging.ParsedInbound, raw: dict) -> str:
    """Ingest one verified inbound SMS/WhatsApp; returns the TwiML reply text ("" for none)."""
    from profiles.services import consent_record

    from ..tasks import fetch_twilio_media

    inbox = inbox_for_number(channel=parsed.channel, address=parsed.recipient)
    keyword = parsed.keyword or twilio_messaging.classify_keyword(parsed.body, inbox)
    result = message_receive(
        InboundMessage(
            inbox=inbox, sender_kind=twilio_messaging.sender_kind(parsed.channel), sender_address=parsed.sender,
            text=parsed.body, sender_name=parsed.profile_name, provider_id=parsed.sid,
            metadata={"twilio": raw, **({"keyword": keyword} if keyword else {})},
            attachments=[
                InboundAttachment(filename=f"media-{index}", content_type=content_type, source_url=url)
                for index, (url, content_type) in enumerate(parsed.media)
            ],
        )
    )
    if result.duplicate:
        return ""
    sender = result.customer.identities.filter(kind=twilio_messaging.sender_kind(parsed.channel)).values_list(
        "value", flat=True).first() or parsed.sender
    if keyword in ("opt_out", "opt_in"):
        consent_record(
            customer=result.customer, channel=parsed.channel, address=sender, sender=inbox.address,
            status=ConsentStatus.OPTED_OUT if keyword == "opt_out" else ConsentStatus.OPTED_IN,
            source=f"OptOutType {parsed.opt_out_type}" if parsed.opt_out_type else f"keyword {parsed.body.strip()[:20]}",
            evidence=f"message {parsed.sid}",
        )
    if parsed.media:
        enqueue_on_commit(fetch_twilio_media, result.message.pk)
    if parsed.opt_out_type:
        return ""  # Twilio's Advanced Opt-Out already answered the customer
    if keyword == "opt_out" and parsed.body.strip().upper() not in twilio_messaging.OPT_OUT_KEYWORDS:
        return JA_OPT_OUT_REPLY  # our own extra keyword: Twilio did not answer it
    return ""
