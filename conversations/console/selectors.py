"""Reads for the agent console, each with a fixed number of queries (STYLE.md habit 6).

The console is three panes: the agent's work list (left), the customer's one timeline with the
conversation in it (centre) and the customer 360 (right). Each pane has one selector here so the
full page, the fragment the page re-fetches after a live event and the reconnect catch-up all
read the same way.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, F, IntegerField, Max, OuterRef, Q, Subquery, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Length
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from profiles.models import Customer, CustomerMerge, IdentityKind, Touchpoint
from profiles.selectors import consent_check

from ..models import (
    ACTIVE_STATUSES as ACTIVE,
)
from ..models import (
    WHATSAPP_WINDOW,
    Agent,
    CannedResponse,
    Channel,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Direction,
    EventType,
    Inbox,
    Message,
    MessageKind,
    Offer,
    OfferStatus,
    Queue,
    WrapUpCode,
)
from ..routing.eligibility import queues_served

WAITING = Q(status=ConversationStatus.OPEN, assignee__isnull=True, abandoned_at__isnull=True)
PICK_LIST_LIMIT = 10
MY_LIST_LIMIT = 100


def _last_message_subquery(field_name: str):
    return Subquery(
        Message.objects.filter(conversation=OuterRef("pk"), kind=MessageKind.MESSAGE)
        .order_by("-created_at", "-id").values(field_name)[:1]
    )


def _with_previews(qs):
    return qs.annotate(
        preview_text=_last_message_subquery("text"),
        preview_direction=_last_message_subquery("direction"),
    )


# --- left pane ----------------------------------------------------------------------------------------

@dataclass
class Sidebar:
    mine: list[Conversation] = field(default_factory=list)
    offers: list[Offer] = field(default_factory=list)
    queues: list[dict] = field(default_factory=list)
    unread_total: int = 0
    # Supervisors: customers waiting for a reply from an agent who is not available (offline with
    # the queue's "stay" policy, on a break): nobody else would notice them.
    unattended: list[Conversation] = field(default_factory=list)

    @property
    def sync_signature(self) -> str:
        """What the page shows of the agent's own work, as ``work_sync`` reports it: the console
        compares the two on a timer and after a reconnect."""
        return work_signature([(c.pk, c.last_seq) for c in self.mine], [o.pk for o in self.offers])


def work_signature(conversations: list[tuple[int, int]], offers: list[int]) -> str:
    """A short digest of (conversation, last sequence number) pairs and pending offer ids, in any order."""
    text = ",".join(f"{c}:{s}" for c, s in sorted(conversations)) + ";" + ",".join(str(o) for o in sorted(offers))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def work_sync(*, agent: Agent | None) -> dict:
    """The agent's own work as the database has it: every active conversation assigned to them (the
    same ones the work list shows) with its customer and newest sequence number, and their pending
    offers. Two queries.

    A live event can be lost with nobody told: published while Redis restarts, or by a worker that
    died between its commit and the publish. The console asks for this after every reconnect and
    on a timer, and catches up whatever it finds newer than what it shows."""
    if agent is None:
        return {"conversations": [], "offers": [], "signature": work_signature([], [])}
    conversations = list(
        Conversation.objects.filter(assignee=agent, status__in=ACTIVE)
        .order_by("-last_message_at", "-id").values_list("pk", "customer_id", "last_seq")[:MY_LIST_LIMIT]
    )
    offers = list(Offer.objects.filter(agent=agent, status=OfferStatus.PENDING).values_list("pk", "conversation_id"))
    return {
        "conversations": [{"id": pk, "customer": customer, "last_seq": seq} for pk, customer, seq in conversations],
        "offers": [{"id": pk, "conversation": conversation} for pk, conversation in offers],
        "signature": work_signature([(pk, seq) for pk, _, seq in conversations], [pk for pk, _ in offers]),
    }


def agent_queues(agent: Agent | None, *, supervisor: bool) -> list[Queue]:
    """Queues the agent serves (has every required skill of, at its level); supervisors serve them all."""
    queues = list(Queue.objects.filter(is_active=True).prefetch_related("queueskill_set").order_by("-priority", "name"))
    if supervisor:
        return queues
    if agent is None:
        return []
    return queues_served(agent, queues)


def sidebar(*, agent: Agent | None, supervisor: bool) -> Sidebar:
    """My conversations (with the last message, waiting time and unread count), my pending offers,
    and the queues I serve with their waiting conversations; for supervisors, the customers waiting
    on an agent who is away. Seven queries (eight for supervisors), whatever the sizes."""
    result = Sidebar()
    if agent is not None:
        unread = Subquery(
            Message.objects.filter(
                conversation=OuterRef("pk"), direction=Direction.INBOUND, kind=MessageKind.MESSAGE,
                seq__gt=Coalesce(
                    Subquery(ConversationRead.objects.filter(agent=agent, conversation=OuterRef(OuterRef("pk")))
                             .values("last_read_seq")[:1]),
                    Value(0),
                ),
            ).order_by().values("conversation").annotate(n=Count("id")).values("n")[:1],
            output_field=IntegerField(),
        )
        result.mine = list(
            _with_previews(Conversation.objects.filter(assignee=agent, status__in=ACTIVE))
            .annotate(unread=Coalesce(unread, Value(0)))
            .select_related("customer", "inbox")
            .order_by("-last_message_at", "-id")[:MY_LIST_LIMIT]
        )
        result.unread_total = sum(c.unread for c in result.mine)
        result.offers = list(
            Offer.objects.filter(agent=agent, status=OfferStatus.PENDING)
            .select_related("conversation__customer", "queue").order_by("expires_at", "id")
        )
    queues = agent_queues(agent, supervisor=supervisor)
    counts = dict(
        Conversation.objects.filter(WAITING, queue__in=queues).values("queue_id").annotate(n=Count("id"))
        .values_list("queue_id", "n")
    )
    pickable = [q for q in queues if q.allow_pick or supervisor]
    waiting_by_queue: dict[int, list[Conversation]] = {q.pk: [] for q in pickable}
    if pickable:
        # The first few waiting conversations of every pickable queue, priority then age, in one
        # query (a window would be nicer; the per-queue cap is applied here on a bounded list).
        rows = (
            _with_previews(Conversation.objects.filter(WAITING, queue__in=pickable))
            .select_related("customer")
            # NULLS LAST on both backends (SQLite sorts NULL first, PostgreSQL last).
            .order_by("-priority", F("queued_at").asc(nulls_last=True), "id")[: PICK_LIST_LIMIT * len(pickable)]
        )
        for conversation in rows:
            bucket = waiting_by_queue[conversation.queue_id]
            if len(bucket) < PICK_LIST_LIMIT:
                bucket.append(conversation)
    if supervisor:
        result.unattended = list(
            _with_previews(Conversation.objects.filter(
                status=ConversationStatus.OPEN, assignee__isnull=False, waiting_since__isnull=False)
                .exclude(assignee__presence__is_available=True))
            .select_related("customer", "assignee__presence")
            .order_by("waiting_since", "id")[:PICK_LIST_LIMIT]
        )
    result.queues = [
        # can_pick: its waiting conversations are listed; can_take: with a Pick button (taking one
        # needs an agent profile: an admin without one sees the list and assigns from the dialog).
        {"queue": q, "waiting": counts.get(q.pk, 0), "can_pick": q.allow_pick or supervisor,
         "can_take": (q.allow_pick or supervisor) and agent is not None,
         "conversations": waiting_by_queue.get(q.pk, [])}
        for q in queues
    ]
    return result


# --- centre pane ----------------------------------------------------------------------------------------

def conversation_seen_map(*, customer_id: int) -> dict[int, int]:
    """{conversation id: last sequence number} for every conversation of the customer: what a
    freshly rendered timeline has seen, the starting point of the live catch-up."""
    return dict(Conversation.objects.filter(customer_id=customer_id).values_list("pk", "last_seq"))


def timeline_catchup(*, customer_id: int, seen: dict[int, int], limit: int = 200) -> tuple[list[Message], dict[int, int], bool]:
    """Every message, note and event of the customer the client has not seen: per conversation,
    the ones numbered after what it saw (conversations it never heard of: all of them).

    Returns (entries oldest first, the new seen map, complete). Two queries. ``complete`` is False
    when more than ``limit`` entries are missing: the client then reloads the pane instead.
    """
    current = conversation_seen_map(customer_id=customer_id)
    missing = Q()
    for conversation_id, last_seq in current.items():
        known = seen.get(conversation_id, 0)
        if last_seq > known:
            missing |= Q(conversation_id=conversation_id, seq__gt=known)
    if not missing:
        return [], current, True
    from ..selectors import MessageTimelineSource

    source = MessageTimelineSource()
    rows = list(source.queryset(customer_id=customer_id).filter(missing).order_by("created_at", "id")[: limit + 1])
    complete = len(rows) <= limit
    rows = rows[:limit]
    if rows:
        source.hydrate(rows)
    if not complete:
        return rows, seen, False
    return rows, current, True


def handoff_note(conversation: Conversation) -> Message | None:
    """The latest transfer that came with a note: the receiver reads it first. Automatic moves
    (overflow, after-hours fallback, offline requeue) are transfers without one and must not
    hide the note an agent left before them. One query."""
    return (
        Message.objects.filter(conversation=conversation, kind=MessageKind.EVENT, event_type=EventType.TRANSFERRED)
        # The note as text is NULL without the key and "" when left empty: neither has a length.
        .annotate(note_length=Length(KT("event_data__note"))).filter(note_length__gt=0)
        .select_related("author_agent").order_by("-created_at", "-id").first()
    )


@dataclass
class ReplyOption:
    channel: str
    label: str
    address: str
    available: bool
    reason: str = ""
    conversation_id: int | None = None
    templates: list = field(default_factory=list)


_CHANNEL_IDENTITIES = {
    Channel.SMS: (IdentityKind.PHONE, IdentityKind.WHATSAPP),
    Channel.WHATSAPP: (IdentityKind.WHATSAPP,),
    Channel.EMAIL: (IdentityKind.EMAIL,),
    Channel.WEBCHAT: (IdentityKind.WEB_VISITOR,),
}


def reply_options(*, conversation: Conversation, customer: Customer) -> list[ReplyOption]:
    """Every channel the agent may answer on, with why not where it is refused (opted out, outside
    WhatsApp's 24 hours, no inbox). The channel the customer last wrote on comes first (an after-hours
    follow-up's channel before it). Four queries
    plus one consent check per channel."""
    identities = list(customer.identities.order_by("-last_seen_at", "-id"))
    inboxes = {}
    for inbox in Inbox.objects.filter(is_active=True).order_by("id"):
        inboxes.setdefault(inbox.kind, inbox)
    active = {
        c.channel: c for c in Conversation.objects.filter(customer=customer, status__in=ACTIVE).order_by("last_message_at")
    }
    last_inbound = {
        row["channel"]: row["at"] for row in Message.objects.filter(
            customer=customer, direction=Direction.INBOUND, kind=MessageKind.MESSAGE,
        ).values("channel").annotate(at=Max("created_at")).order_by()
    }
    now = timezone.now()
    options: list[ReplyOption] = []
    for channel, kinds in _CHANNEL_IDENTITIES.items():
        address = next((i.value for kind in kinds for i in identities if i.kind == kind), "")
        if not address:
            continue
        target = conversation if conversation.channel == channel else active.get(channel)
        inbox = target.inbox if target is not None else inboxes.get(channel)
        shown = _("this chat") if channel == Channel.WEBCHAT else address  # a visitor token means nothing to a person
        option = ReplyOption(channel=channel, label=Channel(channel).label, address=shown, available=True,
                             conversation_id=target.pk if target is not None else None)
        if inbox is None:
            option.available, option.reason = False, _("No %(channel)s inbox is set up.") % {"channel": option.label}
        elif channel == Channel.WEBCHAT and target is None:
            option.available, option.reason = False, _("The visitor has no open chat.")
        elif not (decision := consent_check(channel=channel, address=address, sender=inbox.address)).allowed:
            option.available, option.reason = False, _("Refused: %(reason)s.") % {"reason": decision.reason}
        elif channel == Channel.WHATSAPP:
            at = last_inbound.get(Channel.WHATSAPP)
            option.templates = list((inbox.settings or {}).get("whatsapp_templates", []))
            if not at or now - at >= WHATSAPP_WINDOW:
                option.available = False
                option.reason = _("Outside WhatsApp's 24-hour window: only an approved template can be sent.")
        options.append(option)
    last_channel = max(last_inbound, key=last_inbound.get) if last_inbound else conversation.channel
    # An after-hours follow-up is answered where we told the customer the answer would come.
    preferred = conversation.follow_up_channel or last_channel
    options.sort(key=lambda o: (o.channel != preferred, o.channel != last_channel, o.channel != conversation.channel))
    return options


# Japanese templates add the honorific themselves ("{customer_name}様"); the nameless fallback
# (お客様) already carries it.
_HONORIFIC = "様"


def canned_responses(*, conversation: Conversation | None, agent: Agent | None, language: str = "") -> list[dict]:
    """Active canned responses with their variables filled in for this conversation. A customer
    without a name is greeted in the response's own language ("there", お客様), whatever the
    agent's screen language."""
    customer = conversation.customer if conversation is not None else None
    name = customer.display_name if customer else ""
    agent_name = agent.display_name if agent else ""
    result = []
    for row in CannedResponse.objects.filter(is_active=True):
        text = row.text
        if name:
            values = {"customer_name": name, "customer_first_name": name.split()[0] if name.split() else name}
        else:
            with translation.override(row.language or translation.get_language()):
                fallback = _("there")
            values = {"customer_name": fallback, "customer_first_name": fallback}
            if fallback.endswith(_HONORIFIC):
                for key in values:
                    text = text.replace("{" + key + "}" + _HONORIFIC, "{" + key + "}")
        values["agent_name"] = agent_name
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        result.append({"shortcode": row.shortcode, "title": row.title, "text": text, "language": row.language})
    # The agent's language first, then the rest.
    result.sort(key=lambda r: (bool(language) and r["language"] not in ("", language), r["shortcode"]))
    return result


def wrap_up_codes() -> list[WrapUpCode]:
    return list(WrapUpCode.objects.filter(is_active=True))


def wrap_up_labels(codes) -> dict[str, str]:
    """Code → label in the active language, for the codes resolutions recorded (an event keeps the
    code, so a renamed or translated label shows everywhere). One query, none without codes; a
    code that no longer exists is left out (the caller shows the code itself)."""
    codes = {c for c in codes if c}
    if not codes:
        return {}
    return {code.code: code.display_label for code in WrapUpCode.objects.filter(code__in=codes)}


def label_wrap_up_codes(messages) -> None:
    """Give each resolution event among ``messages`` its wrap-up code's label as ``wrap_up_label``."""
    resolutions = [m for m in messages if m.kind == MessageKind.EVENT and isinstance(m.event_data, dict)
                   and m.event_data.get("wrap_up_code")]
    labels = wrap_up_labels(m.event_data["wrap_up_code"] for m in resolutions)
    for message in resolutions:
        code = message.event_data["wrap_up_code"]
        message.wrap_up_label = labels.get(code, code)


# --- right pane ------------------------------------------------------------------------------------------

@dataclass
class ContactReason:
    conversation: Conversation
    reason: str
    still_open: bool
    outcome: str = ""
    waiting: bool = False


def _first_sentence(text: str, limit: int = 140) -> str:
    text = " ".join((text or "").split())
    for stop in ("。", ". ", "? ", "! ", "？", "！"):
        index = text.find(stop)
        if 0 < index < limit:
            return text[: index + len(stop)].strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def contact_reasons(*, customer: Customer, limit: int = 6, days: int = 180) -> list[ContactReason]:
    """"What they already told us": for each recent conversation, why the customer got in touch
    (the subject, else their first message, first sentence), whether it is still open and how it
    ended. Two queries; read in ten seconds."""
    since = timezone.now() - timedelta(days=days)
    # The first words of each conversation come from a correlated subquery (one row per
    # conversation), never from loading every message of a long history.
    first_inbound = Subquery(
        Message.objects.filter(conversation=OuterRef("pk"), direction=Direction.INBOUND, kind=MessageKind.MESSAGE)
        .exclude(text="").order_by("created_at", "id").values("text")[:1]
    )
    conversations = list(
        Conversation.objects.filter(customer=customer).filter(Q(last_message_at__gte=since) | Q(status__in=ACTIVE))
        .select_related("assignee").annotate(first_inbound=first_inbound).order_by("-last_message_at", "-id")[:limit]
    )
    if not conversations:
        return []
    ids = [c.pk for c in conversations]
    first_inbound = {c.pk: (c.first_inbound or "")[:2000] for c in conversations}
    outcomes = {}
    for row in (Message.objects.filter(conversation_id__in=ids, kind=MessageKind.EVENT, event_type=EventType.RESOLVED)
                .order_by("conversation_id", "-created_at").values("conversation_id", "event_data")):
        outcomes.setdefault(row["conversation_id"], row["event_data"] or {})
    labels = wrap_up_labels(data.get("wrap_up_code", "") for data in outcomes.values())
    reasons = []
    for conversation in conversations:
        reason = conversation.subject or _first_sentence(first_inbound.get(conversation.pk, ""))
        if not reason:
            continue
        data = outcomes.get(conversation.pk, {})
        code = data.get("wrap_up_code", "")
        outcome = " · ".join(filter(None, [labels.get(code, code), _first_sentence(data.get("note", ""), 90)]))
        reasons.append(ContactReason(
            conversation=conversation, reason=reason, still_open=conversation.status in ACTIVE,
            outcome=outcome if conversation.status == ConversationStatus.RESOLVED else "",
            waiting=conversation.waiting_since is not None and conversation.status in ACTIVE,
        ))
    return reasons


def customer_panel(*, customer: Customer, conversation: Conversation | None = None) -> dict:
    """Everything the right pane shows beyond the profile rows the page already prefetched: recent
    touchpoints, open conversations on other channels, the last agent, survey answers and merges."""
    touchpoints = list(Touchpoint.objects.filter(customer=customer).order_by("-occurred_at", "-id")[:5])
    open_elsewhere = list(
        Conversation.objects.filter(customer=customer, status__in=ACTIVE)
        .exclude(pk=conversation.pk if conversation else None).select_related("assignee").order_by("-last_message_at")
    )
    last_agent_row = (
        Conversation.objects.filter(customer=customer, assignee__isnull=False)
        .exclude(pk=conversation.pk if conversation else None)
        .select_related("assignee").order_by("-assigned_at", "-last_message_at").first()
    )
    surveys = [
        {"at": m.created_at, "kind": str((m.event_data or {}).get("kind", "")).upper(),
         "score": (m.event_data or {}).get("score", ""), "comment": str((m.event_data or {}).get("comment", ""))}
        for m in Message.objects.filter(customer=customer, kind=MessageKind.EVENT,
                                        event_type=EventType.SURVEY_ANSWERED).order_by("-created_at")[:5]
    ]
    merges = list(
        CustomerMerge.objects.filter(Q(target=customer) | Q(source=customer), undone_at__isnull=True)
        .select_related("source", "target").order_by("-created_at")[:5]
    )
    return {
        "touchpoints": touchpoints,
        "open_elsewhere": open_elsewhere,
        "last_agent": last_agent_row.assignee if last_agent_row else None,
        "last_agent_at": last_agent_row.last_message_at if last_agent_row else None,
        "surveys": surveys,
        "merges": merges,
        "reasons": contact_reasons(customer=customer),
    }
