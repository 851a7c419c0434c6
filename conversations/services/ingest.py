"""The one ingest path every inbound message takes (DESIGN.md).

channel adapter (verified, normalised) → ``message_receive`` in one transaction:
resolve the customer (profiles) → find or open the conversation → store the message idempotently
(unique provider id per inbox) → after commit: publish the event.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from contactcenter.enqueue import enqueue_on_commit
from contactcenter.storable import json_storable, text_storable
from profiles.languages import primary_language
from profiles.models import Customer, IdentitySource
from profiles.services import identity_resolve

from .. import lifecycle
from ..events import notify_message_created
from ..models import (
    ACTIVE_STATUSES,
    Attachment,
    AttachmentState,
    Conversation,
    ConversationStatus,
    Direction,
    EventType,
    Inbox,
    Message,
    MessageKind,
)
from ..sequence import conversation_save_taking_seq
from ..task_names import ROUTE_CONVERSATION
from .system_events import system_event, system_events_record


@dataclass
class InboundAttachment:
    filename: str
    content_type: str = ""
    content: bytes | None = None  # stored now
    source_url: str = ""  # fetched later by the channel's own task (never from private addresses)
    unavailable_reason: str = ""
    content_id: str = ""  # an email part's, for the formatted email's cid: images


@dataclass
class InboundMessage:
    """What every channel adapter hands to the ingest service, whatever the provider."""

    inbox: Inbox
    sender_kind: str  # profiles.models.IdentityKind
    sender_address: str  # raw: the ingest normalises it
    text: str = ""
    html: str = ""  # already sanitised by the adapter
    subject: str = ""
    sender_name: str = ""
    # The customer's language when the channel knows it (a browser's language, an email's
    # Content-Language), as a BCP 47 tag: kept for a customer who has none yet (routing rules ask).
    sender_language: str = ""
    provider_id: str | None = None  # MessageSid, Message-ID, widget message uuid …
    received_at: datetime | None = None
    metadata: dict = field(default_factory=dict)
    attachments: list[InboundAttachment] = field(default_factory=list)
    # Message ids this one answers (email In-Reply-To/References): followed only within the customer.
    thread_refs: list[str] = field(default_factory=list)
    # Auto-replies, bounces, list mail: stored, but never reopen a conversation or get acknowledged.
    automated: bool = False
    identity_source: str = IdentitySource.INBOUND
    # The channel's own rule for "this conversation is over for good, start a new one" (web chat:
    # the visitor ended the chat), decided here under the customer's lock like every other choice.
    start_fresh_if: Callable[[Conversation], bool] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        """Every channel's message passes here, so this is where text is made storable: NUL
        (which PostgreSQL refuses in text and jsonb, contactcenter.storable) is removed from what
        people read, and the provider's raw payload in ``metadata`` keeps its NULs in a reversible
        form. A message is never lost, or retried forever, over a NUL."""
        for name in ("sender_address", "text", "html", "subject", "sender_name", "sender_language"):
            setattr(self, name, text_storable(getattr(self, name)))
        if self.provider_id:
            self.provider_id = text_storable(self.provider_id)
        self.metadata = json_storable(self.metadata)
        self.thread_refs = [text_storable(ref) for ref in self.thread_refs]
        for attachment in self.attachments:
            for name in ("filename", "content_type", "source_url", "content_id", "unavailable_reason"):
                setattr(attachment, name, text_storable(getattr(attachment, name)))


@dataclass(frozen=True)
class IngestResult:
    message: Message
    conversation: Conversation
    customer: Customer
    duplicate: bool = False
    conversation_opened: bool = False
    conversation_reopened: bool = False


def customer_language(tag: str) -> str:
    """A channel's language tag as customers' languages are kept from channels: the primary
    subtag ("ja-JP" -> "ja", "en_US" -> "en"), which is what routing rules compare; "" for anything
    that is not a plausible tag."""
    return primary_language(tag)


def _existing(inbox: Inbox, provider_id: str | None) -> Message | None:
    if not provider_id:
        return None
    # Every message is checked and almost none is a replay: the check asks for the id alone (one
    # index entry, nothing to build), and only a replay pays for the whole stored message
    # (bench/routing: the full three-model read was a sixth of an ingest's CPU).
    stored = Message.objects.filter(inbox=inbox, provider_id=provider_id).values_list("pk", flat=True).first()
    if stored is None:
        return None
    return Message.objects.select_related("conversation", "customer").get(pk=stored)


def _duplicate(message: Message) -> IngestResult:
    return IngestResult(message=message, conversation=message.conversation, customer=message.customer, duplicate=True)


def _thread_conversation(customer: Customer, refs: list[str]) -> Conversation | None:
    """A conversation of *this* customer that one of ``refs`` points into. A stranger quoting
    another customer's Message-ID never lands in that customer's thread."""
    refs = [ref for ref in refs if ref][:50]
    if not refs:
        return None
    hit = (
        Message.objects.filter(provider_id__in=refs, customer=customer)
        .select_related("conversation")
        .order_by("-created_at")
        .first()
    )
    return hit.conversation if hit else None


def _find_or_open_conversation(
    *, customer: Customer, inbox: Inbox, inbound: InboundMessage, at: datetime, new_customer: bool = False
) -> tuple[Conversation, bool, bool]:
    """Returns (conversation, opened, reopened). Caller holds the customer's row lock.
    ``new_customer``: created by this transaction, so they have no conversation to look for."""
    if new_customer:
        return _open_conversation(customer=customer, inbox=inbox, inbound=inbound, at=at, new_customer=True), True, False
    conversation = _thread_conversation(customer, inbound.thread_refs)
    if conversation is None:
        conversation = (
            Conversation.objects.filter(customer=customer, inbox=inbox).order_by("-last_message_at", "-id").first()
        )
    if conversation is not None and conversation.abandoned_at is not None and not inbound.automated:
        # The customer left while waiting (routing was canceled): a new message starts afresh
        # instead of landing where no router will ever look.
        conversation = None
    if conversation is not None and inbound.start_fresh_if is not None and inbound.start_fresh_if(conversation):
        conversation = None
    if conversation is not None:
        if conversation.status in ACTIVE_STATUSES:
            return conversation, False, False
        if inbound.automated:
            # An auto-reply to our closing message must not wake the conversation up.
            return conversation, False, False
        if within_reopen_window(conversation, inbox, at):
            _reopen(conversation, at=at)
            return conversation, False, True
    return _open_conversation(customer=customer, inbox=inbox, inbound=inbound, at=at), True, False


def within_reopen_window(conversation: Conversation, inbox: Inbox, at: datetime) -> bool:
    """A message at ``at`` to this resolved conversation reopens it (else it opens a new one)."""
    resolved_at = conversation.resolved_at or conversation.last_message_at or conversation.created_at
    return at - resolved_at <= timedelta(days=inbox.reopen_window_days)


def _reopen(conversation: Conversation, *, at: datetime) -> None:
    """The customer wrote again within the inbox's reopen window: the same conversation, a new
    contact. It stays with its agent while they are available (they know the customer); otherwise
    it is placed again, as a new conversation is (the rules may say otherwise now: a VIP since, an
    automated first mail that never went through them) and waits from now, not from its first
    contact (its position, its overflow timer), and its first decision tells the customer their
    position again (routing_note cleared)."""
    from ..models import Agent
    from ..routing.placement import queue_enter, queue_pick

    conversation.status = ConversationStatus.OPEN
    conversation.resolved_at = None
    conversation.snoozed_until = None
    fields = ["status", "resolved_at", "snoozed_until"]
    if conversation.assignee_id and not Agent.objects.filter(pk=conversation.assignee_id,
                                                             presence__is_available=True).exists():
        conversation.assignee = None
        fields.append("assignee")
    if conversation.assignee_id is None:
        why = queue_pick(conversation, at=at)
        if conversation.queue is not None:
            fields += queue_enter(conversation, conversation.queue, at=at, reason=why["rule"])
        conversation.routing_note = ""
        fields.append("routing_note")
    # The conversation's changes and the event in one UPDATE and one INSERT.
    system_events_record(conversation, [system_event(conversation, EventType.REOPENED, at=at, reason="customer_message")],
                         update_fields=fields)


NEW_CONVERSATION_TICK_GRACE = timedelta(seconds=15)


def _open_conversation(*, customer: Customer, inbox: Inbox, inbound: InboundMessage, at: datetime,
                       new_customer: bool = False) -> Conversation:
    """A new conversation for ``inbound``, inserted as it will be once the message is in: its first
    sequence number taken (``last_seq`` 1, the message's) and waiting since now, so neither needs
    an UPDATE of the row just inserted (``_message_store_taking_seq``). Nobody else can see the
    row before commit, so taking the number in the INSERT is as safe as the UPDATE that takes it
    for an existing conversation (conversations.sequence).

    It goes into its queue now, as TaskRouter's workflow places a task when it is created: the
    routing rules first (a VIP, a billing subject), else the inbox's default queue (``queue_pick``),
    so it is queued, and counted in its queue's position and wait, from its first moment. An
    automated message's conversation is resolved at once and never routed: it keeps the inbox's
    default queue, for the record."""
    conversation = Conversation(
        customer=customer, inbox=inbox, channel=inbox.kind, subject=inbound.subject[:300],
        created_at=at, last_message_at=at, last_seq=1,
        status=ConversationStatus.RESOLVED if inbound.automated else ConversationStatus.OPEN,
        resolved_at=at if inbound.automated else None,
        waiting_since=None if inbound.automated else at,
    )
    if inbound.automated:
        conversation.queue_id = inbox.default_queue_id
    else:
        from ..routing.placement import queue_enter, queue_pick

        # A new customer has no tags yet; an hour rule meets the message's time (a mail fetched late).
        why = queue_pick(conversation, tags=[] if new_customer else None, at=at)
        if conversation.queue is not None:
            queue_enter(conversation, conversation.queue, at=at, reason=why["rule"])
        # Routed by the task queued at commit; the tick only if that task is lost.
        conversation.route_at = at + NEW_CONVERSATION_TICK_GRACE
    conversation.save(force_insert=True)
    return conversation


def message_receive(inbound: InboundMessage) -> IngestResult:
    """Store one inbound message on the customer's timeline, exactly once.

    Idempotent on (inbox, provider_id): a replay or a concurrent duplicate returns the stored
    message with ``duplicate=True`` and changes nothing. Raises ``ValidationError`` when the
    sender address does not normalise (the adapter decides how to answer the provider).
    """
    inbox = inbound.inbox
    existing = _existing(inbox, inbound.provider_id)
    if existing is not None:
        return _duplicate(existing)
    at = inbound.received_at or timezone.now()
    try:
        with transaction.atomic():
            language = customer_language(inbound.sender_language)
            resolution = identity_resolve(
                kind=inbound.sender_kind, value=inbound.sender_address, display_name=inbound.sender_name,
                language=language, source=inbound.identity_source,
            )
            # One writer per customer at a time: two messages of the same customer arriving together
            # must join one conversation, not open two.
            # FOR NO KEY UPDATE: exclusive among writers of this customer, but it does not block the
            # KEY SHARE lock a foreign-key check takes, so an agent's note or reply inserting a
            # message for this customer while holding the conversation row cannot deadlock with us.
            # A customer created by this transaction is already ours alone: nobody else sees the row
            # before commit, and a concurrent first message from the same address waits on the
            # identity's unique index until then.
            customer = resolution.customer if resolution.created else \
                Customer.objects.select_for_update(no_key=True).get(pk=resolution.customer.pk)
            if language and not customer.language:
                customer.language = language
                customer.save(update_fields=["language"])
            # A reply that answers a survey (another app decides: conversations.lifecycle) joins the
            # resolved conversation it is about and leaves it resolved; anything else goes on. A
            # consent keyword (STOP, 停止) is never an answer or a survey comment.
            claimed = None
            if not resolution.created and not inbound.automated and not inbound.attachments and \
                    not (inbound.metadata or {}).get("keyword"):
                claimed = lifecycle.inbound_claim(customer=customer, inbox=inbox, text=inbound.text, at=at)
            if claimed is not None:
                conversation, opened, reopened = Conversation.objects.get(pk=claimed), False, False
            else:
                conversation, opened, reopened = _find_or_open_conversation(
                    customer=customer, inbox=inbox, inbound=inbound, at=at, new_customer=resolution.created
                )
                if not inbound.automated:
                    lifecycle.customer_message(customer_id=customer.pk, conversation_id=conversation.pk, at=at)
            seq = conversation.last_seq if opened else _after_inbound_taking_seq(conversation, inbound=inbound, at=at)
            message = Message.objects.create(
                seq=seq, conversation=conversation, customer=customer, inbox=inbox, channel=inbox.kind,
                direction=Direction.INBOUND, kind=MessageKind.MESSAGE, text=inbound.text, html=inbound.html,
                provider_id=inbound.provider_id or None, metadata=inbound.metadata, created_at=at,
            )
            for attachment in inbound.attachments:
                _store_attachment(message, attachment)
            if conversation.assignee_id is None and conversation.status == ConversationStatus.OPEN:
                # Registered first: on-commit callbacks run in order, and routing should not wait
                # behind the websocket notifications (bench/routing).
                enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
            notify_message_created(message, assignee_id=conversation.assignee_id)
    except IntegrityError:
        # A concurrent request stored the same provider id first: that one is the message.
        existing = _existing(inbox, inbound.provider_id)
        if existing is None:
            raise
        return _duplicate(existing)
    return IngestResult(
        message=message, conversation=conversation, customer=customer,
        conversation_opened=opened, conversation_reopened=reopened,
    )


def _store_attachment(message: Message, inbound: InboundAttachment) -> Attachment:
    attachment = Attachment(
        message=message, filename=inbound.filename[:255] or "attachment", content_type=inbound.content_type[:255],
        source_url=inbound.source_url[:2000], content_id=inbound.content_id[:255],
    )
    if inbound.content is not None:
        attachment.size = len(inbound.content)
        attachment.state = AttachmentState.STORED
        attachment.file.save(attachment.filename, ContentFile(inbound.content), save=False)
    elif inbound.unavailable_reason:
        attachment.state = AttachmentState.UNAVAILABLE
        attachment.state_reason = inbound.unavailable_reason[:300]
    else:
        attachment.state = AttachmentState.PENDING
    attachment.save()
    return attachment


def _after_inbound_taking_seq(conversation: Conversation, *, inbound: InboundMessage, at: datetime) -> int:
    """An existing conversation after an inbound message: its last message time, a snoozed one
    woken, waiting since this message if nobody owed an answer yet; and the message's sequence
    number, taken in the same UPDATE (one round trip instead of two)."""
    fields = ["last_message_at"]
    conversation.last_message_at = max(conversation.last_message_at or at, at)
    if conversation.status == ConversationStatus.SNOOZED and not inbound.automated:
        conversation.status = ConversationStatus.OPEN
        conversation.snoozed_until = None
        fields += ["status", "snoozed_until"]
    if conversation.status != ConversationStatus.RESOLVED and conversation.waiting_since is None and not inbound.automated:
        conversation.waiting_since = at
        fields.append("waiting_since")
    if not conversation.subject and inbound.subject:
        conversation.subject = inbound.subject[:300]
        fields.append("subject")
    return conversation_save_taking_seq(conversation, fields)
