"""``python manage.py smtpd``: receive mail over SMTP (aiosmtpd) into the one ingest path.

RCPT TO for an address that is none of our email inboxes → 550 (the sending server bounces it);
DATA larger than ``CC_MAX_EMAIL_BYTES`` → 552 (aiosmtpd stops buffering at the limit, so memory
stays bounded); otherwise the mail is ingested once per recipient inbox and answered 250 only
after it is committed, so a crash before that makes the sender retry rather than lose it.

One mail never holds up another: each is ingested in a thread of a pool (``CC_SMTP_WORKERS``), not
in one shared thread, and the work per mail is bounded (its HTML is measured before it is sanitized
and sanitized under a time budget: ``channels.email.sanitize.render_html``). SIGTERM/SIGINT stop
the listener at once; mail still being ingested gets ``CC_SMTP_STOP_GRACE`` seconds, then the process
exits anyway: a mail not answered 250 is retried by the sending server, never lost.
"""

import asyncio
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

logger = logging.getLogger(__name__)


def _with_fresh_connection(work, **kwargs):
    # What database_sync_to_async does around a call, for a thread of our own pool.
    close_old_connections()
    try:
        return work(**kwargs)
    finally:
        close_old_connections()


class IngestHandler:
    """aiosmtpd handler. The Django work runs in the handler's own thread pool: not in the single
    thread database_sync_to_async shares (thread_sensitive), where one slow mail made every other
    session wait for it."""

    def __init__(self, *, workers: int | None = None):
        self.pool = ThreadPoolExecutor(max_workers=workers or settings.CC_SMTP_WORKERS,
                                       thread_name_prefix="smtpd-ingest")
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _counted(self, work, kwargs):
        # Counted in the thread itself: a session cancelled at stop leaves its thread running.
        with self._lock:
            self._in_flight += 1
        try:
            return _with_fresh_connection(work, **kwargs)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _run(self, work, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._counted, work, kwargs)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        from ...channels.email.ingest import inbox_for_address

        try:
            inbox = await self._run(inbox_for_address, address=address)
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
            results = await self._run(deliver, raw=raw, rcpt_tos=list(envelope.rcpt_tos),
                                      mail_from=envelope.mail_from or "")
        except Exception as exc:  # noqa: BLE001 - tell the sender to retry; never lose it silently
            from ...channels.email.ingest import EmailRejected

            if isinstance(exc, EmailRejected):
                return f"{exc.code} {exc.reason}"
            logger.exception("SMTP ingest failed")
            return "451 4.3.0 Temporary failure, please retry"
        return "250 OK " + " ".join(f"message={m}" for m in results)


def deliver(*, raw: bytes, rcpt_tos: list[str], mail_from: str) -> list[int]:
    """Ingest ``raw`` into each distinct inbox among the recipients; returns the message ids."""
    from ...channels.email.ingest import email_receive, inbox_for_address

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
        stop.wait()
        self._stop(controller)

    def _stop(self, controller: Controller) -> None:
        """Stop within ``CC_SMTP_STOP_GRACE`` seconds whatever a mail's ingest is doing."""
        grace = settings.CC_SMTP_STOP_GRACE
        handler: IngestHandler = controller.handler
        stopper = threading.Thread(target=controller.stop, name="smtpd-stop", daemon=True)
        stopper.start()
        stopper.join(grace)
        handler.pool.shutdown(wait=False, cancel_futures=True)
        if stopper.is_alive() or handler.in_flight:
            # Those mails were not answered 250: their senders retry them. The pool's threads are not
            # daemons, and the interpreter would wait for them at exit: leave without waiting.
            logger.warning("smtpd stopping with %s mail(s) still being ingested; their senders will retry",
                           handler.in_flight)
            self.stdout.write("SMTP listener stopped (unfinished mail left to the senders' retry)")
            self.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        self.stdout.write("SMTP listener stopped")
