"""Twilio SMS/MMS/WhatsApp inbound, in two steps (twilio.md §1: answer fast, work asynchronously,
dedupe on MessageSid).

1. The webhook calls ``twilio_inbound_accept``: one INSERT of the raw event, unique on MessageSid
   (ON CONFLICT DO NOTHING), and the processing task queued once it is committed. A Twilio retry or
   a concurrent duplicate of the same MessageSid finds the row and changes nothing.
2. ``process_twilio_inbound`` calls ``twilio_inbound_event_process``: it claims the event and runs
   ``twilio_inbound_receive`` (consent keywords, media, the common ingest) in the transaction that
   marks the event processed. A failure is recorded on the event and retried with backoff; bad
   input, or too many failures, leaves it failed and visible in the admin.
"""

import logging
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit
from contactcenter.storable import json_restored, json_storable, text_storable
from profiles.models import ConsentStatus

from ...models import Channel, Inbox, TwilioInboundEvent
from ...services.ingest import (
    InboundAttachment,
    InboundMessage,
    IngestResult,
    message_receive,
)
from ...task_names import FETCH_TWILIO_MEDIA, PROCESS_TWILIO_INBOUND
from . import adapter as twilio_messaging

logger = logging.getLogger(__name__)

JA_OPT_OUT_REPLY = "配信を停止しました。再開するには START と返信してください。"

# Retries of a failing event: 30 s, 1, 2, 4 … min, capped at an hour; after MAX_ATTEMPTS tries
# (about two hours) the event is left failed for an admin.
MAX_ATTEMPTS = 8
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
# A retry may arrive a little before the time recorded on the event (clocks of different hosts).
EARLY_TOLERANCE = timedelta(seconds=2)
MAX_SID_LENGTH = TwilioInboundEvent._meta.get_field("message_sid").max_length


def inbox_for_number(*, channel: str, address: str) -> Inbox:
    """The inbox a Twilio number belongs to; ``ValidationError`` (the event fails, with the reason,
    in the admin) when it is none of ours. A signature proves the post came from our Twilio
    account, not that its ``To`` is one of our numbers: creating an inbox for whatever it says (a
    missing or garbage ``To``) would put customers' messages where no queue looks, so a number
    starts receiving only once an admin has configured its inbox."""
    inbox = Inbox.objects.filter(kind=channel, address=address).first() if address else None
    if inbox is None:
        raise ValidationError(
            _("No %(channel)s inbox has the number “%(address)s”: add it under Admin → Inboxes, then "
              "process the event again."),
            code="unknown_destination", params={"channel": Channel(channel).label, "address": address[:64]},
        )
    return inbox


# --- step 1: the webhook ---------------------------------------------------------------------------

@dataclass(frozen=True)
class InboundAccepted:
    event_id: int
    reply: str  # TwiML reply text, "" for none


def twilio_inbound_accept(*, parsed: twilio_messaging.ParsedInbound, raw: dict) -> InboundAccepted | None:
    """Store one verified inbound webhook, queue its processing once it is committed, and decide
    the TwiML reply.

    None when this MessageSid is already stored (a Twilio retry, or a concurrent duplicate:
    PostgreSQL makes the second INSERT wait for the first one's commit, then skips it): nothing
    changes and no second reply goes out. Precondition: ``parsed.sid`` is non-empty and at most
    ``MAX_SID_LENGTH`` characters, without NUL.
    """
    now = timezone.now()
    # Stored as PostgreSQL accepts it (contactcenter.storable): the columns without NUL, the raw
    # payload with its NULs kept reversibly; the processing reads it back through json_restored.
    stored = _insert_unless_stored(
        TwilioInboundEvent(
            message_sid=parsed.sid, account_sid=text_storable(raw.get("AccountSid", ""))[:64],
            sender=text_storable(raw.get("From", ""))[:64], recipient=text_storable(raw.get("To", ""))[:64],
            payload=json_storable(raw), received_at=now, next_attempt_at=now,
        ),
        inbox_kind=parsed.channel, inbox_address=text_storable(parsed.recipient),
    )
    if stored is None:
        return None
    event_id, inbox_settings = stored
    # In a request (autocommit) the INSERT has committed: this queues the task right away.
    enqueue_on_commit(PROCESS_TWILIO_INBOUND, event_id)
    return InboundAccepted(event_id=event_id, reply=_twiml_reply(parsed, inbox_settings))


def _insert_unless_stored(event: TwilioInboundEvent, *, inbox_kind: str,
                          inbox_address: str) -> tuple[int, dict | None] | None:
    """The webhook's one statement: ``INSERT … ON CONFLICT (message_sid) DO NOTHING RETURNING id``,
    returning as well the settings of the inbox the message is for (its keywords decide the
    reply). (new id, inbox settings, None when no inbox has the number), or None when the
    MessageSid is already stored.

    It commits on its own and a duplicate raises nothing, so it needs neither a transaction nor a
    savepoint (one round trip instead of four, on the path Twilio waits on). The ORM has no
    equivalent: ``bulk_create(ignore_conflicts=True)`` cannot tell whether it inserted.
    PostgreSQL, and SQLite >= 3.35 (RETURNING).
    """
    meta, inbox_meta = TwilioInboundEvent._meta, Inbox._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    settings_field = inbox_meta.get_field("settings")
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({quote(meta.get_field('message_sid').column)}) DO NOTHING "
        f"RETURNING {quote(meta.pk.column)}, (SELECT {quote(settings_field.column)} FROM {quote(inbox_meta.db_table)} "
        f"WHERE {quote(inbox_meta.get_field('kind').column)} = %s "
        f"AND {quote(inbox_meta.get_field('address').column)} = %s)"
    )
    params = [field.get_db_prep_save(field.pre_save(event, add=True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, inbox_kind, inbox_address])
        row = cursor.fetchone()
    if row is None:
        return None
    if row[1] is None:  # no inbox has this number: the event will fail (inbox_for_number)
        return row[0], None
    return row[0], settings_field.from_db_value(row[1], None, connection) or {}


def _twiml_reply(parsed: twilio_messaging.ParsedInbound, inbox_settings: dict | None) -> str:
    """Decided in the webhook, before the message is processed, because TwiML is the only free,
    synchronous way to answer: a confirmation for our own extra opt-out keywords (Twilio answers
    its standard ones itself). The consent is recorded by the processing, seconds later at most.
    A number without an inbox gets no reply: its event fails (``inbox_for_number``)."""
    if parsed.opt_out_type or inbox_settings is None:
        return ""  # Twilio's Advanced Opt-Out already answered the customer, or not our number
    keyword = parsed.keyword
    if not keyword and inbox_settings:
        keyword = twilio_messaging.classify_keyword(parsed.body, Inbox(settings=inbox_settings))
    if keyword == "opt_out" and parsed.body.strip().upper() not in twilio_messaging.OPT_OUT_KEYWORDS:
        return JA_OPT_OUT_REPLY  # our own extra keyword: Twilio did not answer it
    return ""


# --- step 2: the task ------------------------------------------------------------------------------

@dataclass(frozen=True)
class InboundProcessOutcome:
    status: str  # processed | skipped | not_due | retry | failed
    retry_in: float | None = None  # seconds, when the task should try again


def twilio_inbound_event_process(*, event_id: int) -> InboundProcessOutcome:
    """Ingest one stored webhook and mark it processed, both in one transaction.

    Safe to run any number of times, concurrently too: the event row is claimed with
    ``SELECT … FOR UPDATE SKIP LOCKED`` (a second execution skips it instead of waiting), a
    processed or failed event is skipped, and ``message_receive`` is idempotent on MessageSid.
    """
    try:
        with transaction.atomic():
            event = (
                TwilioInboundEvent.objects.select_for_update(skip_locked=True)
                .filter(pk=event_id, processed_at__isnull=True, failed_at__isnull=True).first()
            )
            if event is None:
                return InboundProcessOutcome("skipped")  # done, given up, or another worker has it
            if event.attempts and event.next_attempt_at > timezone.now() + EARLY_TOLERANCE:
                # A copy of the task from before the last failure: the backoff decides when.
                return InboundProcessOutcome("not_due")
            twilio_inbound_receive(
                parsed=twilio_messaging.parse(json_restored(event.payload)), raw=event.payload,
                received_at=event.received_at,
            )
            event.processed_at = timezone.now()
            event.attempts += 1
            event.last_error = ""
            event.save(update_fields=["processed_at", "attempts", "last_error"])
    except ValidationError as exc:
        # Bad input (a sender that is no phone number …): retrying cannot help.
        return _event_failed(event_id, error="; ".join(exc.messages), permanent=True)
    except Exception as exc:  # noqa: BLE001 - recorded on the event and retried, never lost
        logger.warning("processing Twilio inbound event %s failed", event_id, exc_info=True)
        return _event_failed(event_id, error="".join(traceback.format_exception(exc))[-4000:], permanent=False)
    return InboundProcessOutcome("processed")


def _retry_delay(attempts: int) -> timedelta:
    return min(RETRY_BASE * 2 ** (attempts - 1), RETRY_CAP)


def _event_failed(event_id: int, *, error: str, permanent: bool) -> InboundProcessOutcome:
    """Record a failed try in a transaction of its own (the ingest's was rolled back, and may have
    died with its connection)."""
    now = timezone.now()
    with transaction.atomic():
        # Waits for a worker that claimed the event meanwhile; if that one processed it, nothing to record.
        event = (
            TwilioInboundEvent.objects.select_for_update()
            .filter(pk=event_id, processed_at__isnull=True, failed_at__isnull=True).first()
        )
        if event is None:
            return InboundProcessOutcome("skipped")
        event.attempts += 1
        event.last_error = error
        if permanent or event.attempts >= MAX_ATTEMPTS:
            event.failed_at = now
            event.save(update_fields=["attempts", "last_error", "failed_at"])
            logger.log(logging.WARNING if permanent else logging.ERROR,
                       "Twilio message %s not ingested after %s attempt(s), left in the admin: %s",
                       event.message_sid, event.attempts, error.strip().splitlines()[-1] if error.strip() else "")
            return InboundProcessOutcome("failed")
        delay = _retry_delay(event.attempts)
        event.next_attempt_at = now + delay
        event.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    return InboundProcessOutcome("retry", retry_in=delay.total_seconds())


def twilio_inbound_events_overdue(*, grace: timedelta, limit: int) -> list[int]:
    """Events whose try is more than ``grace`` overdue (the task was lost, or its worker died):
    their ids, with the due time moved to now so the next tick does not queue them again while
    the queued task waits behind others. Rows a worker holds right now are left alone."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            TwilioInboundEvent.objects.select_for_update(skip_locked=True)
            .filter(processed_at__isnull=True, failed_at__isnull=True, next_attempt_at__lt=now - grace)
            .order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
        )
        TwilioInboundEvent.objects.filter(pk__in=ids).update(next_attempt_at=now)
    return ids


def twilio_inbound_events_prune(*, older_than: timedelta, limit: int = 1000) -> int:
    """Delete processed events older than ``older_than`` (at most ``limit``, oldest first). Failed
    and unprocessed events are never deleted. Walks the primary key from the oldest row, so it
    needs no index of its own and stops after ``limit`` matches."""
    cutoff = timezone.now() - older_than
    ids = list(
        TwilioInboundEvent.objects.filter(processed_at__isnull=False, processed_at__lt=cutoff)
        .order_by("pk").values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    deleted, _rows = TwilioInboundEvent.objects.filter(pk__in=ids).delete()
    return deleted


def twilio_inbound_events_retry(*, event_ids: list[int]) -> int:
    """Give failed (or waiting) events one more try now, e.g. after fixing what made them fail
    (an admin action). Processed events are never processed again."""
    with transaction.atomic():
        ids = list(
            TwilioInboundEvent.objects.filter(pk__in=event_ids, processed_at__isnull=True).values_list("pk", flat=True)
        )
        TwilioInboundEvent.objects.filter(pk__in=ids).update(failed_at=None, next_attempt_at=timezone.now())
        for pk in ids:
            enqueue_on_commit(PROCESS_TWILIO_INBOUND, pk)
    return len(ids)


# --- the ingest itself -----------------------------------------------------------------------------

def twilio_inbound_receive(
    *, parsed: twilio_messaging.ParsedInbound, raw: dict, received_at: datetime | None = None
) -> IngestResult:
    """Ingest one verified inbound SMS/WhatsApp: identity, conversation, message (idempotent on
    MessageSid), consent keywords, media fetch and routing after commit. Raises ``ValidationError``
    for a sender address that does not normalise."""
    from profiles.services import consent_record

    inbox = inbox_for_number(channel=parsed.channel, address=parsed.recipient)
    keyword = parsed.keyword or twilio_messaging.classify_keyword(parsed.body, inbox)
    result = message_receive(
        InboundMessage(
            inbox=inbox, sender_kind=twilio_messaging.sender_kind(parsed.channel), sender_address=parsed.sender,
            text=parsed.body, sender_name=parsed.profile_name, provider_id=parsed.sid, received_at=received_at,
            metadata={"twilio": raw, **({"keyword": keyword} if keyword else {})},
            attachments=[
                InboundAttachment(filename=f"media-{index}", content_type=content_type, source_url=url)
                for index, (url, content_type) in enumerate(parsed.media)
            ],
        )
    )
    if result.duplicate:
        return result
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
        enqueue_on_commit(FETCH_TWILIO_MEDIA, result.message.pk)
    return result
