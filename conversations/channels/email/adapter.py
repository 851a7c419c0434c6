"""Outbound mail: build it from a stored message and hand it to Django's email backend."""

import hashlib
import hmac
import re
import unicodedata

from django.conf import settings

from ...models import Message
from .. import PermanentSendError, SendResult, TransientSendError

# Python's email package splits header values at every character str.splitlines() treats as a line
# break (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029 as well as CR/LF), so a customer's subject holding
# "\x0bName: x" would become a second header (the library refuses it and the reply never left).
# Every header value built from customer input goes through ``header_text`` first.
_LINE_BREAKING = {"\u2028", "\u2029"}
_MESSAGE_ID = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII without < and >


def header_text(value: str, *, limit: int = 900) -> str:
    """``value`` with every control or line-separating character turned into a space and runs of
    spaces folded, so it can never break a header line (nor hide one)."""
    cleaned = "".join(
        " " if unicodedata.category(ch) == "Cc" or ch in _LINE_BREAKING else ch for ch in str(value or "")
    )
    return re.sub(r" {2,}", " ", cleaned).strip()[:limit]


def header_message_ids(values) -> list[str]:
    """Only well-formed Message-IDs (printable ASCII, no brackets): a reference the customer's mail
    made up with spaces or control characters is dropped, not copied into our headers."""
    return [v for v in values if isinstance(v, str) and 0 < len(v) <= 250 and _MESSAGE_ID.fullmatch(v)]


def outbound_message_id(message: Message, *, domain: str) -> str:
    """Deterministic (a retry after an ambiguous failure sends the same Message-ID, which mail
    clients deduplicate) and unguessable (nobody can plant a mail that claims it first)."""
    token = hmac.new(settings.SECRET_KEY.encode(), f"email-message-{message.pk}".encode(), hashlib.sha256)
    return f"cc.{message.pk}.{token.hexdigest()[:20]}@{domain}"


def _reply_subject(subject: str) -> str:
    subject = (subject or "").strip()
    if not subject:
        return "Re:"
    return subject if re.match(r"(?i)^(re|aw|sv|返信)\s*[:：]", subject) else f"Re: {subject}"


def build_outbound(message: Message, *, to: str, from_: str):
    """An ``EmailMultiAlternatives`` for one stored outbound message: From our inbox, our own
    Message-ID, In-Reply-To/References to the customer's last mail in the conversation, plain text
    plus HTML. Automatic mail (no agent wrote it) carries ``Auto-Submitted: auto-generated``."""
    from django.core.mail import EmailMultiAlternatives
    from django.utils.html import escape, linebreaks

    from ...models import Direction, MessageKind

    domain = from_.rsplit("@", 1)[-1] if "@" in from_ else "localhost"
    message_id = outbound_message_id(message, domain=domain)
    conversation = message.conversation
    last_inbound = (
        Message.objects.filter(conversation_id=conversation.pk, direction=Direction.INBOUND, kind=MessageKind.MESSAGE,
                               provider_id__isnull=False, created_at__lte=message.created_at)
        .exclude(metadata__email__isnull=True).order_by("-created_at", "-id").first()
    )
    headers = {"Message-ID": f"<{message_id}>"}
    if last_inbound is not None:
        parents = header_message_ids([last_inbound.metadata["email"].get("message_id") or last_inbound.provider_id])
        parent = parents[0] if parents else ""
        chain = [r for r in header_message_ids(last_inbound.metadata["email"].get("references", [])) if r != parent][-20:]
        if parent:
            headers["In-Reply-To"] = f"<{parent}>"
        if chain or parent:
            headers["References"] = " ".join(f"<{r}>" for r in [*chain, *parents])
    if message.author_agent_id is None or message.metadata.get("automatic"):
        headers["Auto-Submitted"] = "auto-generated"
        headers["X-Auto-Response-Suppress"] = "All"
    subject = message.metadata.get("subject") or _reply_subject(conversation.subject)
    text = message.text or ""
    mail = EmailMultiAlternatives(subject=header_text(subject), body=text, from_email=header_text(from_, limit=320),
                                  to=[header_text(to, limit=320)], headers=headers)
    mail.attach_alternative(f"<div>{linebreaks(escape(text))}</div>", "text/html")
    mail.encoding = "utf-8"
    for attachment in message.attachments.all():
        if attachment.file:
            with attachment.file.open("rb") as handle:
                mail.attach(header_text(attachment.filename, limit=255) or "attachment", handle.read(), attachment.content_type or None)
    return mail, message_id


def send(message: Message, *, to: str, from_: str) -> SendResult:
    """Hand one stored message to Django's email backend. Never called inside a transaction.
    Returns our Message-ID as the provider id, so the customer's reply threads to it."""
    import email.errors
    import smtplib

    from django.core.mail import get_connection

    try:
        mail, message_id = build_outbound(message, to=to, from_=from_)
        # Rendering the MIME message here, not first inside the backend, so a mail that can never be
        # built (an invalid address, a header the library refuses) fails now, with the reason.
        mail.message()
    except (ValueError, UnicodeError, email.errors.MessageError) as exc:
        raise PermanentSendError(f"The email could not be built: {exc}", code="bad_email") from exc
    try:
        connection = get_connection(fail_silently=False)
        sent = connection.send_messages([mail])
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _msg in exc.recipients.values()]
        if all(400 <= code < 500 for code in codes):
            raise TransientSendError(f"SMTP recipient deferred: {exc.recipients}") from exc
        raise PermanentSendError(f"SMTP refused the recipient: {exc.recipients}", code=str(codes[0] if codes else 550)) from exc
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentSendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", code=str(exc.smtp_code)) from exc
        raise TransientSendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", ambiguous=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        # The server may have accepted the DATA before the connection broke; the retry reuses the
        # same Message-ID, so at worst the customer's client sees one mail twice and folds it.
        raise TransientSendError(str(exc) or type(exc).__name__, ambiguous=True) from exc
    if not sent:
        raise TransientSendError("The email backend sent nothing", ambiguous=False)
    return SendResult(provider_id=message_id, status="sent")
