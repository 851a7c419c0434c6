"""What an agent does to a conversation from the console: notes, replies on any channel, snooze,
reopen, read marks. Routing decisions (accept, transfer, resolve, pick) live in ``routing``.

Every function owns its transaction and sends its events after commit.
"""

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit
from contactcenter.storable import text_storable
from profiles.models import Customer

from .. import lifecycle
from ..events import (
    conversation_event,
    conversation_recipients,
    notify_message_created,
    send_on_commit,
)
from ..models import (
    Agent,
    Channel,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Direction,
    EventType,
    Inbox,
    Message,
    MessageKind,
)
from ..sequence import message_seq_next
from ..task_names import ROUTE_CONVERSATION, ROUTE_FOR_AGENT
from .ingest import ACTIVE_STATUSES as ACTIVE
from .outbound import SendRefused, message_send
from .system_events import system_event_record

NOTE_MAX_CHARS = 10_000


def _publish_conversation(conversation: Conversation, event_type: str, **extra) -> None:
    send_on_commit(conversation_recipients(conversation.pk, conversation.assignee_id),
                   conversation_event(conversation, event_type, **extra))


def note_add(*, conversation: Conversation, agent: Agent, text: str) -> Message:
    """A private note on the conversation (and so on the customer's timeline). Never sent to the
    customer, never shown in the widget."""
    text = text_storable(text or "").strip()  # PostgreSQL refuses NUL (contactcenter.storable)
    if not text:
        raise ValidationError(_("The note is empty."), code="empty")
    if len(text) > NOTE_MAX_CHARS:
        raise ValidationError(_("A note holds at most %(max)s characters."), code="too_long",
                              params={"max": NOTE_MAX_CHARS})
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        note = Message.objects.create(
            seq=message_seq_next(locked), conversation=locked, customer_id=locked.customer_id,
            inbox_id=locked.inbox_id, channel=locked.channel, direction=Direction.INTERNAL, kind=MessageKind.NOTE,
            author_agent=agent, text=text,
        )
        notify_message_created(note, assignee_id=locked.assignee_id)
    return note


def _inbox_for_channel(customer: Customer, channel: str) -> Inbox | None:
    """The inbox the customer last used on ``channel``, else the first active one of that kind."""
    used = (
        Conversation.objects.filter(customer=customer, channel=channel, inbox__is_active=True)
        .order_by("-last_message_at", "-id").select_related("inbox").first()
    )
    if used is not None:
        return used.inbox
    return Inbox.objects.filter(kind=channel, is_active=True).order_by("id").first()


def conversation_for_channel(*, customer: Customer, channel: str, agent: Agent, origin: Conversation) -> Conversation:
    """The conversation an agent's reply on ``channel`` belongs to: the customer's active one on
    that channel, else a new one assigned to the agent (the customer answers there, and it comes
    back to the same agent). Web chat only continues an existing chat: a visitor cannot be
    reached when they are not on the site."""
    with transaction.atomic():
        # One opener at a time. FOR NO KEY UPDATE, not FOR UPDATE: the reply that follows in the
        # caller's transaction waits for the conversation's lock, and whoever holds that one inserts
        # a message whose foreign key check takes FOR KEY SHARE on this customer row; FOR UPDATE
        # would block that check and deadlock the two.
        customer = Customer.objects.select_for_update(no_key=True).get(pk=customer.pk)
        existing = (
            Conversation.objects.filter(customer=customer, channel=channel, status__in=ACTIVE)
            .order_by("-last_message_at", "-id").first()
        )
        if existing is not None:
            return existing
        if channel == Channel.WEBCHAT:
            raise SendRefused(_("The visitor has no open chat."), code="no_chat")
        inbox = _inbox_for_channel(customer, channel)
        if inbox is None:
            raise SendRefused(_("No %(channel)s inbox is set up."), code="no_inbox",
                              params={"channel": Channel(channel).label})
        now = timezone.now()
        conversation = Conversation.objects.create(
            customer=customer, inbox=inbox, channel=channel, status=ConversationStatus.OPEN, queue=origin.queue,
            assignee=agent, assigned_at=now, created_at=now, last_message_at=now,
            subject=origin.subject if channel == Channel.EMAIL else "",
            routing_note=f"opened by {agent.display_name} from #{origin.pk}"[:300],
        )
        system_event_record(conversation, EventType.CREATED, agent=agent, via="agent", origin=origin.pk)
        _publish_conversation(conversation, "conversation.assigned", agent=agent.pk)
    return conversation


def reply_send(*, conversation: Conversation, agent: Agent, text: str, channel: str | None = None,
               template: dict | None = None) -> Message:
    """Answer the customer on ``channel`` (default: the conversation's own). Refusals
    (``SendRefused``: opted out, WhatsApp window, too long, no address) come before anything is
    stored or sent."""
    channel = channel or conversation.channel
    if channel not in Channel.values or channel == Channel.VOICE:
        raise SendRefused(_("Replies cannot be sent on that channel."), code="bad_channel")
    text = (text or "").strip()
    if channel == conversation.channel:
        return message_send(conversation=conversation, agent=agent, text=text, template=template)
    # The conversation opened for the reply commits with the reply or not at all: a refusal (opted
    # out, WhatsApp window, no address) must not leave an empty conversation in the agent's list.
    # Locks: the customer (opening), then the conversation (sequence number), the ingest's order.
    with transaction.atomic():
        target = conversation_for_channel(customer=conversation.customer, channel=channel, agent=agent,
                                          origin=conversation)
        return message_send(conversation=target, agent=agent, text=text, template=template)


def conversation_snooze(*, conversation: Conversation, agent: Agent | None, until: datetime) -> Conversation:
    """Put a conversation aside until ``until``; a customer message or the time wakes it up."""
    now = timezone.now()
    if until <= now + timedelta(seconds=30):
        raise ValidationError(_("Snooze until a time in the future."), code="snooze_past")
    if until > now + timedelta(days=90):
        raise ValidationError(_("Snooze for at most 90 days."), code="snooze_too_long")
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status == ConversationStatus.RESOLVED:
            raise ValidationError(_("A resolved conversation cannot be snoozed; reopen it first."), code="resolved")
        locked.status = ConversationStatus.SNOOZED
        locked.snoozed_until = until
        locked.save(update_fields=["status", "snoozed_until", "updated_at"])
        system_event_record(locked, EventType.SNOOZED, agent=agent, until=until.isoformat())
        _publish_conversation(locked, "conversation.snoozed", until=until.isoformat())
        if locked.assignee_id:
            # A snoozed conversation holds no capacity: the agent's waiting work comes now.
            enqueue_on_commit(ROUTE_FOR_AGENT, locked.assignee_id)
    return locked


def conversation_reopen(*, conversation: Conversation, agent: Agent | None, reason: str = "agent") -> Conversation:
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status == ConversationStatus.OPEN:
            return locked
        locked.status = ConversationStatus.OPEN
        locked.resolved_at = None
        locked.snoozed_until = None
        fields = ["status", "resolved_at", "snoozed_until", "updated_at"]
        if agent is not None and locked.assignee_id is None:
            # An agent reopening a conversation takes it: nobody else is watching it.
            locked.assignee = agent
            locked.assigned_at = timezone.now()
            fields += ["assignee", "assigned_at"]
        locked.save(update_fields=fields)
        system_event_record(locked, EventType.REOPENED, agent=agent, reason=reason)
        lifecycle.reopened(locked.pk)
        _publish_conversation(locked, "conversation.reopened", agent=locked.assignee_id)
        _route_if_unassigned(locked)
    return locked


def _route_if_unassigned(conversation: Conversation) -> None:
    """Open again with nobody on it: routing finds it an agent (after commit)."""
    if conversation.assignee_id is None and conversation.status == ConversationStatus.OPEN:
        enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)


def snoozed_wake(*, limit: int = 200) -> int:
    """Tick job: snoozed conversations whose time has come are open again (and back in the
    agent's list, with an event saying why)."""
    due = list(
        Conversation.objects.filter(status=ConversationStatus.SNOOZED, snoozed_until__lte=timezone.now())
        .values_list("pk", flat=True)[:limit]
    )
    woken = 0
    for conversation_id in due:
        with transaction.atomic():
            locked = Conversation.objects.select_for_update(skip_locked=True).filter(
                pk=conversation_id, status=ConversationStatus.SNOOZED).first()
            if locked is None:
                continue
            locked.status = ConversationStatus.OPEN
            locked.snoozed_until = None
            locked.save(update_fields=["status", "snoozed_until", "updated_at"])
            system_event_record(locked, EventType.REOPENED, reason="snooze_ended")
            _publish_conversation(locked, "conversation.reopened", agent=locked.assignee_id)
            _route_if_unassigned(locked)
            woken += 1
    return woken


def conversation_mark_read(*, agent: Agent, conversation: Conversation, up_to_seq: int | None = None) -> None:
    """The agent has seen everything up to ``up_to_seq`` (what their page shows; default: the
    conversation's current sequence number, never beyond it). The mark never moves back: a late
    request from a page that had seen less changes nothing."""
    seq = conversation.last_seq if up_to_seq is None else max(0, min(up_to_seq, conversation.last_seq))
    now = timezone.now()
    moved = ConversationRead.objects.filter(agent=agent, conversation=conversation, last_read_seq__lt=seq).update(
        last_read_seq=seq, read_at=now)
    if not moved:
        # No row yet, or already as far: the unique (agent, conversation) makes a race harmless.
        ConversationRead.objects.get_or_create(agent=agent, conversation=conversation,
                                               defaults={"last_read_seq": seq, "read_at": now})
