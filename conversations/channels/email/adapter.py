"""Outbound mail: build it from a stored message and hand it to Django's email backend."""

import hashlib
import hmac
import re

from django.conf import settings

from ...models import Message
from .. import PermanentSendError, SendResult, TransientSendError

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
        parent = last_inbound.metadata["email"].get("message_id") or last_inbound.provider_id
        chain = [r for r in last_inbound.metadata["email"].get("references", []) if r != parent][-20:]
        headers["In-Reply-To"] = f"<{parent}>"
        headers["References"] = " ".join(f"<{r}>" for r in [*chain, parent])
    if message.author_agent_id is None or message.metadata.get("automatic"):
        headers["Auto-Submitted"] = "auto-generated"
        headers["X-Auto-Response-Suppress"] = "All"
    subject = message.metadata.get("subject") or _reply_subject(conversation.subject)
    text = message.text or ""
    mail = EmailMultiAlternatives(subject=subject.replace("\n", " ").replace("\r", " ")[:900], body=text,
                                  from_email=from_, to=[to], headers=headers)
    mail.attach_alternative(f"<div>{linebreaks(escape(text))}</div>", "text/html")
    mail.encoding = "utf-8"
    for attachment in message.attachments.all():
        if attachment.file:
            with attachment.file.open("rb") as handle:
                mail.attach(attachment.filename, handle.read(), attachment.content_type or None)
    return mail, message_id


def send(message: Message, *, to: str, from_: str) -> SendResult:
    """Hand one stored message to Django's email backend. Never called inside a transaction.
    Returns our Message-ID as the provider id, so the customer's reply threads to it."""
    import smtplib

    from django.core.mail import get_connection

    mail, message_id = build_outbound(message, to=to, from_=from_)
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
