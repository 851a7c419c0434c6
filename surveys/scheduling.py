"""When a survey is owed, when it is due, and when it is not sent after all.

Resolving a conversation schedules its survey (one row per conversation, by constraint) with its
due time: the delay after resolve, pushed out of the customer's quiet hours. What the policy rules
out is recorded as a skipped row with its reason (the admin lists them; the conversation's
timeline shows a quiet event). A reopen, or any new message from the customer, before the survey
went out cancels it. The tick claims what is due (``surveys_claim_due``) and queues one send each.
"""

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from contactcenter.enqueue import enqueue_on_commit
from conversations.models import (
    ACTIVE_STATUSES,
    Conversation,
    ConversationStatus,
    Direction,
    EventType,
    Message,
    MessageKind,
)
from conversations.sequence import message_seq_next
from conversations.services.system_events import system_event

from .comments import surveys_why_lost
from .links import new_token
from .models import (
    SkipReason,
    SurveyDefinition,
    SurveyFollowUp,
    SurveyPolicy,
    SurveyRequest,
    SurveyStatus,
)
from .task_names import SEND_SURVEYS
from .timeline_texts import stored_text

# A claim older than this with the survey still scheduled: its send task was lost; claim again.
STALE_CLAIM = timedelta(minutes=10)


def customer_zone(customer) -> ZoneInfo:
    for name in (getattr(customer, "time_zone", ""), settings.CC_DEFAULT_TIME_ZONE, "UTC"):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _in_quiet_hours(local: datetime, policy: SurveyPolicy) -> bool:
    start, end, now = policy.quiet_start, policy.quiet_end, local.time()
    if start < end:
        return start <= now < end
    return now >= start or now < end  # overnight (20:00–09:00)


def out_of_quiet_hours(at: datetime, *, customer, policy: SurveyPolicy) -> datetime:
    """``at`` if it is outside the customer's quiet hours, else the end of those quiet hours (the
    morning), in the customer's own time zone."""
    zone = customer_zone(customer)
    local = at.astimezone(zone)
    if not _in_quiet_hours(local, policy):
        return at
    morning = local.replace(hour=policy.quiet_end.hour, minute=policy.quiet_end.minute, second=0, microsecond=0)
    if morning <= local:
        morning = (local + timedelta(days=1)).replace(
            hour=policy.quiet_end.hour, minute=policy.quiet_end.minute, second=0, microsecond=0)
        # A DST jump is settled by the zone: re-localise the wall-clock time.
        morning = datetime(morning.year, morning.month, morning.day, morning.hour, morning.minute, tzinfo=zone)
    return morning.astimezone(UTC)


def definition_for(conversation: Conversation) -> SurveyDefinition | None:
    """The most specific active survey: one naming the conversation's queue, else its inbox, else
    one that names neither (for everything)."""
    active = SurveyDefinition.objects.filter(is_active=True).order_by("id")
    if conversation.queue_id:
        found = active.filter(queues=conversation.queue_id).first()
        if found:
            return found
    found = active.filter(inboxes=conversation.inbox_id).first()
    if found:
        return found
    return active.filter(queues__isnull=True, inboxes__isnull=True).first()


def recently_surveyed(customer_id: int, *, policy: SurveyPolicy, now: datetime, exclude: int | None = None) -> bool:
    """Surveyed (sent, answered or expired) within the policy's days, or one is already on its way,
    on any channel."""
    since = now - timedelta(days=policy.days_between)
    rows = SurveyRequest.objects.filter(customer_id=customer_id).exclude(pk=exclude)
    return rows.filter(
        Q(status__in=[SurveyStatus.SENT, SurveyStatus.ANSWERED, SurveyStatus.EXPIRED], sent_at__gte=since)
        | Q(status=SurveyStatus.SCHEDULED)
    ).exists()


def _had_agent_reply(conversation: Conversation) -> bool:
    return Message.objects.filter(conversation=conversation, direction=Direction.OUTBOUND,
                                  kind=MessageKind.MESSAGE, author_agent__isnull=False).exists()


def skip_event_record(request: SurveyRequest) -> None:
    """The quiet event on the conversation's timeline saying why no survey went out (the reason's
    code in its data, worded in the viewer's language by ``timeline_texts``; the stored text in
    English). Caller owns the transaction."""
    conversation = Conversation.objects.select_for_update().get(pk=request.conversation_id)
    event = system_event(conversation, EventType.SURVEY_SKIPPED, survey=request.pk, kind=request.definition.kind,
                         reason=request.skip_reason, detail=request.skip_detail)
    event.text = stored_text(EventType.SURVEY_SKIPPED, event.event_data)
    event.seq = message_seq_next(conversation)
    event.save(force_insert=True)


def _skip_reason_at_schedule(conversation: Conversation, *, policy: SurveyPolicy, now: datetime) -> str:
    if SurveyFollowUp.objects.filter(conversation=conversation).exists():
        return SkipReason.FOLLOW_UP
    if not _had_agent_reply(conversation):
        return SkipReason.NO_AGENT_REPLY
    if recently_surveyed(conversation.customer_id, policy=policy, now=now):
        return SkipReason.RECENTLY_SURVEYED
    return ""


def survey_schedule(*, conversation_id: int, now: datetime | None = None, rng=random) -> SurveyRequest | None:
    """The survey owed to a resolved conversation: scheduled with its due time, or recorded as
    skipped with the reason. Idempotent: a conversation has at most one (constraint); a second
    resolve after a reopen schedules nothing new, nor does a conversation no survey covers."""
    now = now or timezone.now()
    conversation = Conversation.objects.select_related("customer", "inbox").filter(pk=conversation_id).first()
    if conversation is None or conversation.status != ConversationStatus.RESOLVED:
        return None
    existing = SurveyRequest.objects.filter(conversation_id=conversation_id).first()
    if existing is not None and existing.status != SurveyStatus.CANCELED:
        return None
    definition = definition_for(conversation)
    if definition is None:
        return None
    policy = SurveyPolicy.current()
    reason = _skip_reason_at_schedule(conversation, policy=policy, now=now)
    if not reason and rng.random() * 100 >= definition.sampling_percent:
        reason = SkipReason.NOT_SAMPLED
    due = out_of_quiet_hours(now + timedelta(seconds=definition.delay_seconds), customer=conversation.customer,
                             policy=policy)
    request = existing or SurveyRequest(conversation=conversation)
    _fill(request,
        conversation=conversation, customer_id=conversation.customer_id, channel=conversation.channel,
        definition=definition, agent_id=conversation.assignee_id, queue_id=conversation.queue_id,
        status=SurveyStatus.SKIPPED if reason else SurveyStatus.SCHEDULED, skip_reason=reason,
        due_at=due, token=new_token(), created_at=now, claimed_at=None, skip_detail="",
    )
    try:
        with transaction.atomic():
            # Resolved again after a reopen canceled its survey: the same row, owed again.
            if existing is not None:
                if not SurveyRequest.objects.filter(pk=existing.pk, status=SurveyStatus.CANCELED).update(
                        status=SurveyStatus.SKIPPED if reason else SurveyStatus.SCHEDULED):
                    return None
                request.save()
            else:
                request.save(force_insert=True)
            if reason:
                skip_event_record(request)
    except IntegrityError:
        return None  # another resolve hook got there first: that row is the survey
    return request


def schedule_after_resolve(conversation_id: int) -> None:
    """``conversations.lifecycle``'s resolve hook (after commit)."""
    survey_schedule(conversation_id=conversation_id)


def _fill(request: SurveyRequest, **fields) -> None:
    for name, value in fields.items():
        setattr(request, name, value)


def survey_skip(request: SurveyRequest, reason: str, detail: str = "") -> None:
    """Record why a due survey is not sent. Caller holds the request's row lock."""
    request.status = SurveyStatus.SKIPPED
    request.skip_reason = reason
    request.skip_detail = detail[:300]
    request.save(update_fields=["status", "skip_reason", "skip_detail"])
    skip_event_record(request)


def surveys_cancel_for_customer(*, customer_id: int, conversation_id: int | None = None, at=None) -> int:
    """The customer is back (a new message, on any channel) before their survey went out: it is
    canceled. Runs in the caller's transaction (conversations.lifecycle), so it commits with the
    message. A survey already claimed by a worker is canceled too: the send checks the status under
    the row lock before sending."""
    return SurveyRequest.objects.filter(customer_id=customer_id, status=SurveyStatus.SCHEDULED).update(
        status=SurveyStatus.CANCELED, skip_reason="", skip_detail="customer wrote again")


def survey_cancel_for_conversation(conversation_id: int) -> int:
    """A reopened conversation is not over: its scheduled survey is canceled (caller's transaction)."""
    return SurveyRequest.objects.filter(conversation_id=conversation_id, status=SurveyStatus.SCHEDULED).update(
        status=SurveyStatus.CANCELED, skip_detail="conversation reopened")


def surveys_claim_due(*, limit: int = 500, now: datetime | None = None) -> list[int]:
    """Claim up to ``limit`` due surveys for this worker and return their ids. Two ticks at once
    never claim the same row: SKIP LOCKED gives each its own rows, and the UPDATE only takes rows
    nobody claimed (``claimed_at IS NULL``)."""
    now = now or timezone.now()
    with transaction.atomic():
        # A claim whose send task was lost is released, to be claimed again below.
        SurveyRequest.objects.filter(status=SurveyStatus.SCHEDULED, claimed_at__lt=now - STALE_CLAIM).update(
            claimed_at=None)
        ids = list(
            SurveyRequest.objects.select_for_update(skip_locked=True)
            .filter(status=SurveyStatus.SCHEDULED, claimed_at__isnull=True, due_at__lte=now)
            .order_by("due_at", "id").values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        claimed = SurveyRequest.objects.filter(pk__in=ids, claimed_at__isnull=True).update(claimed_at=now)
        assert claimed == len(ids), "rows locked by this transaction cannot be claimed by another"
    return ids


def surveys_expire(*, now: datetime | None = None) -> int:
    """Sent surveys past the answer window stop taking answers."""
    now = now or timezone.now()
    policy = SurveyPolicy.current()
    return SurveyRequest.objects.filter(
        status=SurveyStatus.SENT, sent_at__lt=now - timedelta(hours=policy.answer_window_hours)
    ).update(status=SurveyStatus.EXPIRED)


SEND_BATCH = 50


def surveys_due_job(*, limit: int = 500) -> int:
    """The tick's job: claim what is due and queue its sending, by name, in batches of
    ``SEND_BATCH`` (one broker message per batch keeps the tick short however much is due)."""
    ids = surveys_claim_due(limit=limit)
    for start in range(0, len(ids), SEND_BATCH):
        enqueue_on_commit(SEND_SURVEYS, ids[start:start + SEND_BATCH])
    surveys_expire()
    surveys_why_lost()
    return len(ids)


def another_conversation_open(request: SurveyRequest) -> bool:
    return Conversation.objects.filter(customer_id=request.customer_id, status__in=ACTIVE_STATUSES).exclude(
        pk=request.conversation_id).exists()

