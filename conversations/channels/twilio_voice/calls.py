"""The writes of a call's life: started, IVR choice, queued, callback or voicemail asked for,
connected, ended, recording and transcript stored. Each owns its transaction, locks the
conversation row first (then the call's), records the step on the customer's timeline, and is
idempotent: Twilio retries a webhook, and a retried step changes nothing and answers the same.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit
from contactcenter.storable import text_storable
from profiles.models import Customer, IdentityKind, IdentitySource, Tag
from profiles.services import identity_resolve

from ... import lifecycle
from ...events import notify_message_created
from ...models import (
    CALL_FINAL_STATUSES,
    Agent,
    Attachment,
    AttachmentState,
    Call,
    CallOutcome,
    CallStatus,
    Channel,
    Conversation,
    ConversationStatus,
    Direction,
    EventType,
    Inbox,
    Message,
    MessageKind,
    OfferStatus,
    Queue,
)
from ...routing.assignment import conversation_abandon
from ...routing.offers import pending_offers_close
from ...routing.placement import queue_enter, queue_pick
from ...sequence import conversation_save_taking_seq
from ...services.system_events import system_event, system_events_record
from ...task_names import FETCH_TWILIO_MEDIA, ROUTE_CONVERSATION
from .ivr import IvrConfig, IvrOption

logger = logging.getLogger(__name__)

# Twilio's stand-ins for a number the caller withheld (twilio.md §3; Twilio's docs list these
# "anonymous" numbers for Restricted, Anonymous, Unavailable and Blocked callers), and the words
# carriers put in From instead of a number.
WITHHELD_NUMBERS = frozenset({"+266696687", "+86282452253", "+7378742833", "+2562533"})
WITHHELD_WORDS = frozenset({"", "anonymous", "restricted", "unavailable", "unknown", "private", "blocked",
                            "withheld", "non-display", "非通知", "公衆電話", "通知不可能"})
ROUTE_GRACE = timedelta(seconds=15)
DEFAULT_WAIT_LIMIT = 600  # seconds on hold before voicemail, when neither the line nor the queue says
_CALL_STATUS_RANK = {CallStatus.QUEUED: 0, CallStatus.RINGING: 1, CallStatus.IN_PROGRESS: 2}


def is_withheld(number: str) -> bool:
    text = (number or "").strip()
    return text.lower() in WITHHELD_WORDS or text in WITHHELD_NUMBERS


def voice_inbox(address: str) -> Inbox:
    inbox = Inbox.objects.filter(kind=Channel.VOICE, address=address, is_active=True).first() if address else None
    if inbox is None:
        raise ValidationError(_("No voice inbox has the number “%(address)s”."), code="unknown_destination",
                              params={"address": (address or "")[:64]})
    return inbox


def _lock(call_pk: int) -> tuple[Conversation, Call]:
    """The call's conversation, then the call, locked in that order (every writer of a call takes
    both in this order, and routing locks the conversation alone: no deadlock)."""
    conversation_id = Call.objects.filter(pk=call_pk).values_list("conversation_id", flat=True).get()
    conversation = Conversation.objects.select_for_update().select_related("inbox", "customer").get(pk=conversation_id)
    call = Call.objects.select_for_update().get(pk=call_pk)
    call.conversation = conversation
    return conversation, call


# --- started -----------------------------------------------------------------------------------------

def call_start(*, call_sid: str, from_: str, to: str, status: str = "", caller_name: str = "",
               language: str = "ja") -> tuple[Call, bool]:
    """The call Twilio announced: its customer (by ``From``, the same customer as their SMS; a
    withheld number gets a customer of its own each time, never a shared "anonymous" one), a new
    voice conversation that waits for the IVR (pending: not routed yet), the call row (unique
    CallSid) and "call started" on the timeline. ``(call, created)``; a retry finds the call."""
    existing = Call.objects.filter(call_sid=call_sid).select_related("conversation__inbox").first()
    if existing is not None:
        return existing, False
    if from_.lower().startswith("client:"):
        # An agent's browser calling out (the softphone's TwiML App has its own URL): no customer.
        raise ValidationError(_("A browser client's call is not a customer's call."), code="client_call")
    inbox = voice_inbox(to)
    now = timezone.now()
    withheld = is_withheld(from_)
    try:
        with transaction.atomic():
            if withheld:
                customer = Customer.objects.create(display_name=caller_name[:200] or _("Caller (number withheld)"))
            else:
                resolution = identity_resolve(kind=IdentityKind.PHONE, value=from_, display_name=caller_name,
                                              source=IdentitySource.INBOUND)
                customer = resolution.customer
            conversation = Conversation(
                customer=customer, inbox=inbox, channel=Channel.VOICE, status=ConversationStatus.PENDING,
                created_at=now, last_message_at=now, subject=_("Phone call"),
            )
            conversation.save(force_insert=True)
            call = Call.objects.create(
                conversation=conversation, call_sid=call_sid, from_address=text_storable(from_)[:64],
                to_address=text_storable(to)[:64], status=status if status in CallStatus.values else CallStatus.RINGING,
                language=language, started_at=now,
            )
            system_events_record(conversation, [system_event(
                conversation, EventType.CALL_STARTED, at=now, call_sid=call_sid, withheld=withheld,
                **({} if withheld else {"from": call.from_address}))])
            if not withheld:
                # The customer is back (a call is a contact as a message is): a survey still
                # scheduled for them is canceled with the call (conversations.lifecycle).
                lifecycle.customer_message(customer_id=customer.pk, conversation_id=conversation.pk, at=now)
    except IntegrityError:
        # A concurrent retry of the same CallSid inserted it first: that one is the call.
        existing = Call.objects.filter(call_sid=call_sid).select_related("conversation__inbox").first()
        if existing is None:
            raise
        return existing, False
    return call, True


# --- the IVR ------------------------------------------------------------------------------------------

def call_language_set(*, call: Call, language: str) -> Call:
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        if call.language != language:
            call.language = language
            call.ivr = {**call.ivr, "language": language}
            call.save(update_fields=["language", "ivr", "updated_at"])
            system_events_record(conversation, [system_event(conversation, EventType.IVR_CHOICE, choice="language",
                                                             language=language)])
    return call


def call_no_input(*, call: Call, attempt: int) -> None:
    """The caller said and pressed nothing at menu ``attempt`` (kept for the record: retries)."""
    with transaction.atomic():
        _conversation, call = _lock(call.pk)
        if call.ivr.get("no_input", 0) < attempt:
            call.ivr = {**call.ivr, "no_input": attempt}
            call.save(update_fields=["ivr", "updated_at"])


def call_enqueue(*, call: Call, config: IvrConfig, option: IvrOption | None, digits: str = "", speech: str = "",
                 how: str = "") -> Call:
    """The caller chose (or the line has no menu, or the default was taken): the conversation
    enters its queue as every new contact does, waiting from now, and routing is queued after
    commit. The option's queue when it names one; else the routing rules, which see ``ivr`` (the
    option's name), the language and the customer's tags the option set. Idempotent: a call
    already queued is left as it is."""
    now = timezone.now()
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        if call.queued_at is not None or call.outcome or call.status in CALL_FINAL_STATUSES:
            return call
        events = []
        if option is not None:
            call.ivr = {**call.ivr, "option": option.name, "key": option.key, "how": how,
                        **({"digits": digits[:20]} if digits else {}), **({"speech": speech[:200]} if speech else {})}
            events.append(system_event(conversation, EventType.IVR_CHOICE, at=now, choice="option", option=option.name,
                                       key=option.key, how=how, speech=speech[:200]))
            customer = conversation.customer
            if option.tags:
                tags = [Tag.objects.get_or_create(name=name[:50])[0] for name in option.tags]
                customer.tags.add(*tags)
            language = option.language or ("" if customer.language else call.language)
            if language and customer.language != language:
                customer.language = language
                customer.save(update_fields=["language"])
        call.queued_at = now
        # The IVR choice is saved before placement reads it (rule_context asks the call).
        call.save(update_fields=["ivr", "queued_at", "updated_at"])
        queue = None
        if option is not None and option.queue:
            queue = Queue.objects.filter(slug=option.queue, is_active=True).first()
            if queue is not None and not queue.takes(Channel.VOICE):
                queue = None
        if queue is not None:
            reason = f"IVR option {option.name}"
        else:
            reason = queue_pick(conversation, at=now)["rule"]
            queue = conversation.queue
        conversation.status = ConversationStatus.OPEN
        conversation.waiting_since = now
        conversation.route_at = now + ROUTE_GRACE
        fields = ["status", "waiting_since", "route_at"]
        if queue is not None:
            fields += queue_enter(conversation, queue, at=now, reason=reason)
        else:
            conversation.queue = None
            fields.append("queue")
        # How long the caller may wait before voicemail, fixed now (the wait loop reads it often).
        call.ivr = {**call.ivr, "wait_limit": wait_limit(config, queue)}
        call.save(update_fields=["ivr", "updated_at"])
        events.append(system_event(conversation, EventType.CALL_QUEUED, at=now, queue=queue.pk if queue else None,
                                   queue_name=queue.name if queue else "", reason=reason[:100]))
        system_events_record(conversation, events, update_fields=fields)
        enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
    return call


def wait_limit(config: IvrConfig, queue: Queue | None) -> int:
    """The line's own limit; else the queue's: its overflow time when it overflows nowhere (no
    agent within the queue's limit); else DEFAULT_WAIT_LIMIT."""
    if config.max_wait_seconds:
        return config.max_wait_seconds
    if queue is not None and queue.overflow_after_seconds and not queue.overflow_queue_id:
        return queue.overflow_after_seconds
    return DEFAULT_WAIT_LIMIT


# --- while waiting ------------------------------------------------------------------------------------

def call_callback_request(*, call: Call) -> bool:
    """Virtual hold: the caller hangs up and keeps their place; the conversation stays queued
    exactly where it was, and the agent who takes it calls them back. False for a withheld number
    (nothing to call)."""
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        if call.callback_requested:
            return True
        if is_withheld(call.from_address) or conversation.assignee_id:
            return False
        number = conversation.customer.identities.filter(kind=IdentityKind.PHONE).order_by(
            "-last_seen_at").values_list("value", flat=True).first()
        if not number:
            return False
        call.callback_requested, call.callback_requested_at, call.callback_number = True, timezone.now(), number
        call.save(update_fields=["callback_requested", "callback_requested_at", "callback_number", "updated_at"])
        system_events_record(conversation, [system_event(conversation, EventType.CALLBACK_REQUESTED, number=number,
                                                         queued_at=call.queued_at.isoformat() if call.queued_at else None)])
    return True


def call_way_out_offered(*, call: Call, reason: str) -> None:
    """The caller on hold is offered a callback or voicemail instead of waiting: their queue
    closed (``closed_while_waiting``, on the timeline once) or they waited past the line's limit
    (``no_agent``). Kept on the call: the voicemail that follows says why."""
    if call.ivr.get("way_out") == reason:
        return
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        if call.ivr.get("way_out") == reason:
            return
        call.ivr = {**call.ivr, "way_out": reason,
                    **({"closed_while_waiting": True} if reason == "closed_while_waiting" else {})}
        call.save(update_fields=["ivr", "updated_at"])
        if reason == "closed_while_waiting":
            system_events_record(conversation, [system_event(conversation, EventType.IVR_CHOICE, choice="queue_closed")])


def call_voicemail_start(*, call: Call, reason: str) -> Call:
    """The caller is taken to voicemail (asked for it, the line is closed, or nobody answered within
    the limit): routing stops offering the call (pending offers canceled) until the recording
    arrives, which makes the conversation a follow-up (``voicemail_store``)."""
    now = timezone.now()
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        if call.outcome == CallOutcome.VOICEMAIL or conversation.assignee_id:
            return call
        call.outcome = CallOutcome.VOICEMAIL
        call.ivr = {**call.ivr, "voicemail": reason}
        call.save(update_fields=["outcome", "ivr", "updated_at"])
        events = pending_offers_close(conversation, OfferStatus.CANCELED, now)
        events.append(system_event(conversation, EventType.VOICEMAIL, at=now, stage="prompted", reason=reason))
        fields = []
        if conversation.status == ConversationStatus.OPEN:
            conversation.status = ConversationStatus.PENDING
            fields.append("status")
        system_events_record(conversation, events, update_fields=fields)
    return call


# --- connected ---------------------------------------------------------------------------------------

def call_answered(*, call_id: int, agent: Agent) -> Call:
    """The caller was put through to ``agent`` in the conversation's conference (the softphone's
    ``call_put_through`` records the timeline event)."""
    now = timezone.now()
    with transaction.atomic():
        _conversation, call = _lock(call_id)
        call.agent, call.answered_at, call.outcome = agent, call.answered_at or now, CallOutcome.ANSWERED
        call.save(update_fields=["agent", "answered_at", "outcome", "updated_at"])
    return call


def call_missed_by_agent(conversation: Conversation, call: Call, *, leg_status: str, at) -> None:
    """The agent's leg rang out: the conversation is nobody's again and waits in its queue in the
    place it had (``queued_at`` kept), routing offers it anew. Caller holds the conversation's
    lock, then the call's, and records the ``CALL_LEFT`` event."""
    from ...routing.offers import routing_event_publish

    previous = conversation.assignee_id
    call.agent, call.answered_at, call.connected_for = None, None, None
    if call.outcome == CallOutcome.ANSWERED:
        call.outcome = CallOutcome.NONE
    call.ivr = {**call.ivr, "missed_by": [*call.ivr.get("missed_by", []), previous][-10:]}
    call.save(update_fields=["agent", "answered_at", "connected_for", "outcome", "ivr", "updated_at"])
    conversation.assignee = None
    conversation.waiting_since = conversation.waiting_since or at
    conversation.route_at = at
    conversation.routing_note = f"back to the queue: the agent's phone was not answered ({leg_status})"[:300]
    system_events_record(conversation, [system_event(conversation, EventType.TRANSFERRED, at=at, from_agent=previous,
                                                     to_queue=conversation.queue_id, reason="agent_no_answer")],
                         update_fields=["assignee", "waiting_since", "route_at", "routing_note"])
    routing_event_publish({"type": "conversation.requeued", "conversation": conversation.pk, "agent": previous},
                          agents=[previous], conversation_id=conversation.pk)
    enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)


def call_survey_started(*, call_id: int, survey: dict) -> None:
    """The post-call survey the caller is taken to (what to ask, in both languages, and the
    surveys app's token for the answer)."""
    with transaction.atomic():
        _conversation, call = _lock(call_id)
        call.ivr = {**call.ivr, "survey": {"token": str(survey["token"]), "high": int(survey["high"]),
                                           "question": {lang: str(text) for lang, text in survey["question"].items()}}}
        call.save(update_fields=["ivr", "updated_at"])


def callback_started(*, call_id: int, callback_sid: str, agent_id: int) -> None:
    with transaction.atomic():
        conversation, call = _lock(call_id)
        if call.callback_call_sid:
            return
        call.callback_call_sid = callback_sid[:64]
        call.save(update_fields=["callback_call_sid", "updated_at"])
        system_events_record(conversation, [system_event(conversation, EventType.CALLBACK_STARTED,
                                                         author_agent_id=agent_id, number=call.callback_number,
                                                         call_sid=callback_sid)])


# --- ended --------------------------------------------------------------------------------------------

def call_status_update(*, call_sid: str, status: str, duration: str = "") -> Call | None:
    """Twilio's status callback: the status moves forward only (callbacks come out of order); the
    final one ends the call once: its duration and outcome on the timeline, a caller who hung up in
    the queue abandoned (as a web-chat visitor who leaves), one who hung up in the menu closes the
    conversation. A callback leg's end is recorded on the caller's call. None: not our call."""
    call = Call.objects.filter(call_sid=call_sid).first()
    callback_leg = False
    if call is None:
        call = Call.objects.filter(callback_call_sid=call_sid).first()
        callback_leg = call is not None
    if call is None or status not in CallStatus.values:
        return call
    now = timezone.now()
    abandon = False
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        if callback_leg:
            if status in CALL_FINAL_STATUSES:
                system_events_record(conversation, [system_event(conversation, EventType.CALL_ENDED, at=now, leg="callback",
                                                                 status=status, duration=_seconds(duration))])
            return call
        if call.ended_at is not None:
            return call  # already ended: a repeated or late callback
        if status not in CALL_FINAL_STATUSES:
            if _CALL_STATUS_RANK.get(status, 0) > _CALL_STATUS_RANK.get(call.status, 0):
                call.status = status
                call.save(update_fields=["status", "updated_at"])
            return call
        call.status, call.ended_at, call.duration = status, now, _seconds(duration)
        fields = ["status", "ended_at", "duration", "outcome", "updated_at"]
        conversation_fields = []
        if not call.outcome:
            if call.answered_at is not None:
                call.outcome = CallOutcome.ANSWERED
            elif call.callback_requested:
                call.outcome = CallOutcome.CALLBACK
            elif call.queued_at is not None:
                call.outcome, abandon = CallOutcome.ABANDONED, True
            else:
                call.outcome = CallOutcome.IVR_HANGUP
        if call.outcome == CallOutcome.IVR_HANGUP and conversation.status != ConversationStatus.RESOLVED:
            # Hung up before choosing: nothing for an agent to do, but the call stays on the timeline.
            conversation.status, conversation.resolved_at = ConversationStatus.RESOLVED, now
            conversation_fields += ["status", "resolved_at"]
        call.save(update_fields=fields)
        system_events_record(conversation, [system_event(
            conversation, EventType.CALL_ENDED, at=now, status=status, outcome=call.outcome, **_duration_fields(call.duration),
            author_agent_id=call.agent_id)], update_fields=conversation_fields)
    if abandon:
        conversation_abandon(conversation_id=call.conversation_id, reason="caller hung up while waiting")
    return call


def call_hung_up_in_queue(*, call: Call) -> None:
    """Enqueue's action said ``hangup``: abandoned now, without waiting for the status callback."""
    call.refresh_from_db()
    if call.callback_requested or call.outcome or call.answered_at:
        return
    conversation_abandon(conversation_id=call.conversation_id, reason="caller hung up while waiting")


def _seconds(value) -> int | None:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return None


# --- voicemail ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VoicemailStored:
    message: Message
    created: bool


def voicemail_text(seconds: int | None, transcript: str | None) -> str:
    length = _("Voicemail (%(seconds)s s)") % {"seconds": seconds if seconds is not None else "?"}
    if transcript is None:
        return _("%(length)s: transcript pending") % {"length": length}
    if not transcript.strip():
        return _("%(length)s: no transcript") % {"length": length}
    return f"{length}: {transcript.strip()}"


def voicemail_store(*, call_sid: str, recording_sid: str, recording_url: str, duration: str,
                    transcript_expected: bool) -> VoicemailStored | None:
    """The recording is ready: a message on the timeline carrying it as an attachment (its audio
    fetched later with Twilio's credentials, like MMS media: no page ever shows Twilio's URL),
    and the conversation becomes a follow-up routed to an agent. Idempotent on the RecordingSid
    (the message's provider id). None: not our call."""
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None or not recording_sid:
        return None
    now = timezone.now()
    seconds = _seconds(duration)
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        stored = Message.objects.filter(inbox_id=conversation.inbox_id, provider_id=recording_sid).first()
        if stored is not None:
            return VoicemailStored(stored, False)
        call.recording_sid, call.recording_duration = recording_sid[:64], seconds
        call.outcome = CallOutcome.VOICEMAIL
        call.transcript_status = "pending" if transcript_expected else "none"
        call.save(update_fields=["recording_sid", "recording_duration", "outcome", "transcript_status", "updated_at"])
        fields = ["last_message_at", "status", "abandoned_at", "waiting_since", "follow_up_at", "follow_up_channel"]
        conversation.last_message_at = now
        conversation.abandoned_at = None
        conversation.follow_up_at, conversation.follow_up_channel = now, Channel.VOICE
        if conversation.status != ConversationStatus.OPEN:
            conversation.status, conversation.resolved_at = ConversationStatus.OPEN, None
            fields.append("resolved_at")
        conversation.waiting_since = conversation.waiting_since or now
        if conversation.assignee_id is None:
            if conversation.queue_id is None:
                reason = queue_pick(conversation, at=now)["rule"]
                if conversation.queue is not None:
                    fields += queue_enter(conversation, conversation.queue, at=now, reason=reason)
            elif conversation.queued_at is None:
                conversation.queued_at = now
                fields.append("queued_at")
            conversation.route_at = now + ROUTE_GRACE
            fields.append("route_at")
        seq = conversation_save_taking_seq(conversation, fields)
        message = Message.objects.create(
            seq=seq, conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
            channel=Channel.VOICE, direction=Direction.INBOUND, kind=MessageKind.MESSAGE,
            text=voicemail_text(seconds, None if transcript_expected else ""), provider_id=recording_sid,
            metadata={"voicemail": {"call_sid": call.call_sid, "recording_sid": recording_sid, "duration": seconds}},
            created_at=now,
        )
        Attachment.objects.create(
            message=message, filename=f"voicemail-{recording_sid[:40]}.mp3", content_type="audio/mpeg",
            source_url=(recording_url + ".mp3")[:2000] if recording_url else "",
            state=AttachmentState.PENDING if recording_url else AttachmentState.UNAVAILABLE,
            state_reason="" if recording_url else "Twilio gave no recording URL",
        )
        system_events_record(conversation, [system_event(conversation, EventType.VOICEMAIL, at=now, stage="recorded",
                                                         duration=seconds, message=message.pk)])
        if recording_url:
            enqueue_on_commit(FETCH_TWILIO_MEDIA, message.pk)
        if conversation.assignee_id is None:
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
        notify_message_created(message, assignee_id=conversation.assignee_id)
    return VoicemailStored(message, True)


def transcript_store(*, recording_sid: str, text: str, status: str) -> Message | None:
    """Twilio's transcription callback: the voicemail message says what the caller said (or "no
    transcript" when it failed). Idempotent: the first completed transcript wins."""
    call = Call.objects.filter(recording_sid=recording_sid).first() if recording_sid else None
    if call is None:
        return None
    with transaction.atomic():
        conversation, call = _lock(call.pk)
        message = Message.objects.select_for_update().filter(
            inbox_id=conversation.inbox_id, provider_id=recording_sid).first()
        if message is None or call.transcript_status in ("completed", "failed"):
            return message
        transcript = text_storable(text or "").strip() if status == "completed" else ""
        call.transcript, call.transcript_status = transcript, "completed" if status == "completed" else "failed"
        call.save(update_fields=["transcript", "transcript_status", "updated_at"])
        message.text = voicemail_text(call.recording_duration, transcript)
        message.metadata = {**message.metadata, "transcript": transcript, "transcript_status": call.transcript_status}
        message.save(update_fields=["text", "metadata"])
    return message


def _duration_fields(seconds: int | None) -> dict:
    """A call's duration on its ``call_ended`` event: seconds, and "m:ss" for the timeline (as the
    softphone writes it)."""
    if seconds is None:
        return {"duration_seconds": None, "duration": ""}
    seconds = max(0, int(seconds))
    return {"duration_seconds": seconds, "duration": f"{seconds // 60}:{seconds % 60:02d}"}
