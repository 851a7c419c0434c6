"""``python manage.py smtpd``: receive mail over SMTP (aiosmtpd) into the one ingest path.

RCPT TO for an address that is none of our email inboxes → 550 (the sending server bounces it);
DATA larger than ``CC_MAX_EMAIL_BYTES`` → 552 (aiosmtpd stops buffering at the limit, so memory
stays bounded); otherwise the mail is ingested once per recipient inbox and answered 250 only
after it is committed, so a crash before that makes the sender retry rather than lose it.
"""

import logging
import signal
import threading

from aiosmtpd.controller import Controller
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


class IngestHandler:
    """aiosmtpd handler; the Django work runs in a worker thread (database_sync_to_async)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        from ...services.email import inbox_for_address

        try:
            inbox = await database_sync_to_async(inbox_for_address)(address)
        except Exception:  # e.g. PostgreSQL down: aiosmtpd itself would answer a permanent 500
            logger.exception("SMTP recipient lookup failed")
            return "451 4.3.0 Temporary failure, please retry"  # the sender keeps the mail and retries
        if inbox is None:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            results = await database_sync_to_async(deliver)(
                raw=raw, rcpt_tos=list(envelope.rcpt_tos), mail_from=envelope.mail_from or ""
            )
        except Exception as exc:  # noqa: BLE001 - tell the sender to retry; never lose it silently
            from ...services.email import EmailRejected

            if isinstance(exc, EmailRejected):
                return f"{exc.code} {exc.reason}"
            logger.exception("SMTP ingest failed")
            return "451 4.3.0 Temporary failure, please retry"
        return "250 OK " + " ".join(f"message={m}" for m in results)


def deliver(*, raw: bytes, rcpt_tos: list[str], mail_from: str) -> list[int]:
    """Ingest ``raw`` into each distinct inbox among the recipients; returns the message ids."""
    from ...services.email import email_receive, inbox_for_address

    inboxes = {}
    for address in rcpt_tos:
        inbox = inbox_for_address(address)
        if inbox is not None:
            inboxes.setdefault(inbox.pk, inbox)
    results = []
    for inbox in inboxes.values():
        result = email_receive(raw=raw, inbox=inbox, envelope_to=rcpt_tos, envelope_from=mail_from, source="smtp")
        results.append(result.message.pk)
    return results


def make_controller(*, hostname: str | None = None, port: int | None = None) -> Controller:
    return Controller(
        IngestHandler(), hostname=hostname or settings.CC_SMTP_HOST,
        port=settings.CC_SMTP_PORT if port is None else port,
        data_size_limit=settings.CC_MAX_EMAIL_BYTES, decode_data=False,
        server_hostname="contactcenter", ident="contactcenter smtpd",
    )


class Command(BaseCommand):
    help = "Receive inbound email over SMTP (aiosmtpd) into the contact center."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None)
        parser.add_argument("--port", type=int, default=None)

    def handle(self, *args, **options):
        controller = make_controller(hostname=options["host"], port=options["port"])
        controller.start()
        self.stdout.write(f"SMTP listening on {controller.hostname}:{controller.port} "
                          f"(max {settings.CC_MAX_EMAIL_BYTES} bytes)")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            stop.wait()
        finally:
            controller.stop()
