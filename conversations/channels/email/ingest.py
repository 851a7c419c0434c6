"""Inbound email, whichever way it came (SMTP listener, raw-MIME webhook, IMAP polling).

Every path calls ``email_receive(raw=…)``: pick the inbox by recipient, parse (never raises), and
hand the result to the one ingest path (``message_receive``) with the Message-ID as provider id,
then keep the raw bytes byte for byte next to the message, in the same transaction.

Identity (threats.md "Spoofed or ambiguous From"): From is an inbound identity, a claim like a
caller id. We rely on it only when nothing in the mail contradicts it. When the From address
belongs to a known customer but the mail is ambiguous (several From addresses, a Reply-To or
Sender naming another mailbox, a failed verdict from our own MTA's Authentication-Results), the
mail is stored under a separate "unverified sender" customer, with the claim in the metadata and
a merge suggestion for an agent to confirm. It never lands in, or threads into, the known
customer's history on its own; nobody can receive that customer's replies by setting Reply-To.
"""

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from profiles import addresses
from profiles.models import Identity, IdentityKind, IdentitySource
from profiles.services import (
    suggest_from_email_signature,
    suggest_same_name_same_domain,
    suggestion_record,
)

from ...models import Channel, Direction, Inbox, Message, RawEmail
from ...services.ingest import (
    InboundAttachment,
    InboundMessage,
    IngestResult,
    message_receive,
)
from .parse import parse as parse_email
from .parsed import ParsedEmail

logger = logging.getLogger(__name__)

SOURCES = ("smtp", "webhook", "imap")


class EmailRejected(Exception):
    """The mail is refused as a whole; ``code`` is the SMTP reply code to answer with."""

    code = 550

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class EmailTooLarge(EmailRejected):
    code = 552


class NoInboxForRecipient(EmailRejected):
    code = 550


def email_inboxes() -> list[Inbox]:
    return list(Inbox.objects.filter(kind=Channel.EMAIL, is_active=True))


def _normalized(address: str) -> str:
    try:
        return addresses.normalize_email(address)
    except ValidationError:
        return ""


def inbox_for_address(address: str) -> Inbox | None:
    """The active email inbox receiving at ``address`` (case-insensitive; plus-tags ignored, so
    support+ticket42@ reaches support@)."""
    normalized = _normalized(address)
    if not normalized:
        return None
    local, _at, domain = normalized.partition("@")
    candidates = {normalized, f"{local.split('+', 1)[0]}@{domain}"}
    for inbox in email_inboxes():
        if _normalized(inbox.address) in candidates:
            return inbox
    return None


def _pick_inbox(parsed: ParsedEmail, envelope_to: list[str] | None) -> Inbox | None:
    # The SMTP envelope is what the sending server delivered to; headers come after (Bcc has none).
    for address in [*(envelope_to or []), *parsed.delivered_to, *parsed.to, *parsed.cc]:
        inbox = inbox_for_address(address)
        if inbox is not None:
            return inbox
    return None


def _provider_id(inbox: Inbox, parsed: ParsedEmail, sha: str) -> str:
    """The Message-ID, which makes redelivery (SMTP retry, the same mail over IMAP) a no-op.

    A Message-ID is chosen by the sender: a mail reusing another sender's id, or one of ours,
    must not be swallowed as that message's "duplicate", so a collision gets the id plus the
    hash of the raw bytes (the same bytes again still deduplicate)."""
    mid = parsed.message_id
    if not mid or len(mid) > 200:
        return f"sha256:{sha}"
    existing = Message.objects.filter(inbox=inbox, provider_id=mid).only("direction", "metadata").first()
    if existing is None:
        return mid
    previous_from = (existing.metadata or {}).get("email", {}).get("from", "")
    if existing.direction == Direction.INBOUND and previous_from.lower() == parsed.from_address.lower():
        return mid
    return f"{mid}#sha256:{sha[:40]}"


@dataclass(frozen=True)
class SenderIdentity:
    kind: str
    address: str
    name: str
    quarantined: bool
    claimed_owner_id: int | None = None


def _sender_identity(parsed: ParsedEmail, sha: str) -> SenderIdentity:
    from_address = _normalized(parsed.from_address)
    if not from_address:
        token = hashlib.sha256(f"unknown|{parsed.from_address}|{sha}".encode()).hexdigest()[:32]
        return SenderIdentity(IdentityKind.EXTERNAL_ID, f"email-unknown:{token}",
                              parsed.from_name or parsed.from_address or "Unknown sender", True)
    owner = Identity.objects.filter(kind=IdentityKind.EMAIL, value=from_address).values_list("customer_id", flat=True).first()
    if owner is not None and parsed.identity_doubts:
        # One quarantine customer per (claimed From, actual Reply-To/Sender) pair, so a thread of
        # such mails stays together without touching the known customer.
        key = "|".join([from_address, *sorted(a.lower() for a in parsed.reply_to), parsed.sender.lower()])
        token = hashlib.sha256(key.encode()).hexdigest()[:32]
        return SenderIdentity(IdentityKind.EXTERNAL_ID, f"email-unverified:{token}",
                              f"{parsed.from_name or from_address} (unverified)", True, owner)
    return SenderIdentity(IdentityKind.EMAIL, from_address, parsed.from_name, False)


def _metadata(parsed: ParsedEmail, *, source: str, sha: str, size: int, sender: SenderIdentity,
              envelope_from: str | None, notice: str) -> dict:
    email_meta = {
        "message_id": parsed.message_id, "from": parsed.from_address, "from_name": parsed.from_name,
        "to": parsed.to[:50], "cc": parsed.cc[:50], "reply_to": parsed.reply_to[:10], "sender": parsed.sender,
        "subject": parsed.subject, "date": parsed.date.isoformat() if parsed.date else "",
        "in_reply_to": parsed.in_reply_to, "references": parsed.references, "headers": parsed.headers,
        "charsets": list(dict.fromkeys(parsed.charsets))[:20], "sha256": sha, "size": size,
        "envelope_from": envelope_from or "",
    }
    metadata = {"email": email_meta, "source": source}
    if parsed.quote_start is not None:
        metadata["quote_start"] = parsed.quote_start
        metadata["quote_marker"] = parsed.quote_marker[:300]
    if parsed.automated:
        metadata["automated"] = parsed.automated
    if parsed.identity_doubts:
        metadata["identity_doubts"] = parsed.identity_doubts
    if sender.quarantined:
        metadata["unverified_sender"] = {"claimed_from": parsed.from_address, "reply_to": parsed.reply_to[:10],
                                         "sender": parsed.sender}
    if parsed.defects:
        metadata["defects"] = parsed.defects[:50]
    if parsed.bounce:
        metadata["bounce"] = parsed.bounce
    if parsed.html_not_rendered:
        # The agent is told the formatted version is not shown and why; the raw mail is kept.
        metadata["html_not_rendered"] = parsed.html_not_rendered
    if notice:
        metadata["notice"] = notice
    return metadata


def email_receive(*, raw: bytes, inbox: Inbox | None = None, envelope_to: list[str] | None = None,
                  envelope_from: str | None = None, source: str = "smtp", notice: str = "",
                  extra_metadata: dict | None = None) -> IngestResult:
    """Ingest one raw RFC 5322 message, exactly once per inbox and Message-ID.

    Raises ``EmailTooLarge`` past ``CC_MAX_EMAIL_BYTES`` and ``NoInboxForRecipient`` when none of
    the recipients is one of our inboxes; anything else in the mail (bad MIME, charsets, huge
    attachments) is stored best-effort with the raw bytes, never refused.
    """
    raw = bytes(raw)
    if len(raw) > settings.CC_MAX_EMAIL_BYTES:
        raise EmailTooLarge(f"Message too large: {len(raw)} bytes (limit {settings.CC_MAX_EMAIL_BYTES} bytes)")
    own = tuple(i.address for i in email_inboxes())
    parsed = parse_email(raw, envelope_from=envelope_from, own_addresses=own)
    inbox = inbox or _pick_inbox(parsed, envelope_to)
    if inbox is None:
        raise NoInboxForRecipient("No email inbox here for " + ", ".join((envelope_to or parsed.to)[:5] or ["(none)"]))
    sha = hashlib.sha256(raw).hexdigest()
    sender = _sender_identity(parsed, sha)
    text = f"{notice}\n\n{parsed.text}".strip() if notice else parsed.text
    metadata = _metadata(parsed, source=source, sha=sha, size=len(raw), sender=sender, envelope_from=envelope_from,
                         notice=notice)
    if extra_metadata:
        metadata.update(extra_metadata)
    if notice and "quote_start" in metadata:
        metadata["quote_start"] += len(text) - len(parsed.text)
    inbound = InboundMessage(
        inbox=inbox, sender_kind=sender.kind, sender_address=sender.address, sender_name=sender.name[:200],
        text=text, html=parsed.html, subject=parsed.subject[:300], provider_id=_provider_id(inbox, parsed, sha),
        # A bounce or an auto-reply speaks the language of the software that wrote it, not the person's.
        sender_language="" if parsed.automated else parsed.language,
        metadata=metadata, thread_refs=parsed.thread_refs, automated=bool(parsed.automated),
        identity_source=IdentitySource.INBOUND,
        attachments=[
            InboundAttachment(filename=a.filename, content_type=a.content_type, content=a.content,
                              unavailable_reason=a.unavailable_reason, content_id=a.content_id)
            for a in parsed.attachments
        ],
    )
    with transaction.atomic():
        # The raw bytes commit with the message or not at all.
        result = message_receive(inbound)
        if not result.duplicate:
            RawEmail.objects.create(
                message=result.message, raw=raw, size=len(raw), sha256=sha, source=source,
                envelope_from=(envelope_from or "")[:320], envelope_to=list(envelope_to or [])[:50],
            )
    if not result.duplicate:
        _after_receive(result, parsed, sender, inbox)
    return result


def _after_receive(result: IngestResult, parsed: ParsedEmail, sender: SenderIdentity, inbox: Inbox) -> None:
    from profiles.models import Customer

    from ...services.outbound import delivery_status_receive

    if sender.quarantined and sender.claimed_owner_id:
        suggestion_record(
            customer=Customer.objects.get(pk=sender.claimed_owner_id), candidate=result.customer,
            reason="email_unverified_from",
            evidence={"claimed_from": parsed.from_address, "reply_to": parsed.reply_to[:10], "sender": parsed.sender,
                      "doubts": parsed.identity_doubts, "message": result.message.pk},
        )
    if not parsed.automated and not sender.quarantined:
        # Only the sender's own words: the quoted history may hold our signature or another person's.
        suggest_from_email_signature(customer=result.customer, text=parsed.own_text)
        if result.conversation_opened:
            # A new thread from a colleague-looking address (same name, same company domain) is
            # probably the same person writing from another mailbox: an agent decides.
            suggest_same_name_same_domain(customer=result.customer)
    original = parsed.bounce.get("original_message_id")
    if original and parsed.bounce.get("action", "").lower() == "failed" and Message.objects.filter(
        inbox=inbox, provider_id=original, direction=Direction.OUTBOUND
    ).exists():
        delivery_status_receive(
            provider_id=original, status="undelivered", error_code=parsed.bounce.get("status", "")[:32],
            payload={"bounce": parsed.bounce, "message": result.message.pk},
        )
