"""Reads on conversations, with fixed query counts (STYLE.md habit 6)."""

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, prefetch_related_objects
from django.db.models.fields.json import KT
from django.http import Http404
from django.utils import timezone

# is_supervisor: the console and the API import it from here.
from contactcenter.permissions import is_contact_center_staff, is_supervisor  # noqa: F401

from .models import Agent, Attachment, Conversation, Message, Offer, OfferStatus


class MessageTimelineSource:
    """Messages, private notes and system events of every conversation of a customer.

    Only the author is joined: the entry carries its own channel, conversation id and customer id,
    and building three more model instances per row was most of the page's cost (bench/timeline).
    """

    type = "message"
    rank = 0
    time_field = "created_at"

    def queryset(self, *, customer_id: int) -> QuerySet:
        return (
            Message.objects.filter(customer_id=customer_id)
            .select_related("author_agent")
            # Provider payloads and mail headers can be large and no timeline view reads them;
            # the small facts the display needs are read out of the JSON by the database.
            .defer("metadata")
            .annotate(
                quote_start_raw=KT("metadata__quote_start"),
                automated_raw=KT("metadata__automated"),
                unverified_from=KT("metadata__unverified_sender__claimed_from"),
                html_not_rendered=KT("metadata__html_not_rendered"),
            )
        )

    def hydrate(self, messages: list[Message]) -> None:
        prefetch_related_objects(messages, Prefetch("attachments", queryset=Attachment.objects.order_by("id")))




def agent_of(user) -> Agent | None:
    if not user or not user.is_authenticated:
        return None
    return Agent.objects.filter(user=user).select_related("presence").first()


def agent_conversation_access(agent_id: int, *, at=None) -> Q:
    """THE rule for an agent (every door uses it through ``access_conversation``): a conversation
    is theirs to see while it is assigned to them, while an offer of it to them is open (pending
    and not past its expiry: a rejected, timed-out or rescinded offer grants nothing), or while it
    waits unassigned in a queue that allows picking and whose every required skill they have.
    Supervisors see every conversation (``access_conversation``). One condition on Conversation
    rows, so checking one conversation is one query."""
    from .routing.eligibility import skills_lacking

    at = at or timezone.now()
    open_offer = Offer.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=at),
        conversation=OuterRef("pk"), agent_id=agent_id, status=OfferStatus.PENDING)
    pickable = Q(assignee__isnull=True, queue__isnull=False, queue__allow_pick=True) & ~Exists(
        skills_lacking(queue_id=OuterRef("queue_id"), agent_id=agent_id))
    return Q(assignee_id=agent_id) | Exists(open_offer) | pickable


def conversation_accessible(*, agent_id: int, conversation_id: int) -> bool:
    """Whether the agent may still see the conversation (one query): the console socket asks it
    again before relaying each event of a conversation it watches."""
    return Conversation.objects.filter(pk=conversation_id).filter(agent_conversation_access(agent_id)).exists()


def access_conversation(*, user, conversation_id, agent: Agent | None = None) -> Conversation:
    """The conversation if ``user`` may see it, else ``Http404`` (a stranger's ids give 404, never
    403). Every door asks here: console pages and fragments, console actions, the REST API, the
    console socket's watch and typing. Supervisors (and admins) see every conversation; agents
    those ``agent_conversation_access`` grants."""
    try:
        conversation_id = int(conversation_id)
    except (TypeError, ValueError):
        raise Http404 from None
    if not is_contact_center_staff(user):
        raise Http404
    conversations = Conversation.objects.select_related("queue", "assignee", "customer", "inbox").filter(
        pk=conversation_id)
    if not is_supervisor(user):
        agent = agent or Agent.objects.filter(user=user).first()
        if agent is None:
            raise Http404
        conversations = conversations.filter(agent_conversation_access(agent.pk))
    conversation = conversations.first()
    if conversation is None:
        raise Http404
    return conversation


def customers_served_by(user) -> Q:
    """The customers an agent served or may serve, as a condition on Customer rows: the scope
    ``conversations`` registers in ``profiles.access_registry`` for ``CC_CUSTOMER_ACCESS =
    "served"``. Served: a conversation of theirs assigned to the agent, offered to them (pending or
    accepted) or in a queue whose every required skill they have; or a message or note the agent
    wrote to them. Two small reads (the agent, the queues' skills), then one condition."""
    from .models import Queue
    from .routing.eligibility import queues_served

    agent = Agent.objects.filter(user=user).first()
    if agent is None:
        return Q(pk__in=[])
    served_queues = [queue.pk for queue in queues_served(agent, list(Queue.objects.prefetch_related("queueskill_set")))]
    offered = Offer.objects.filter(conversation=OuterRef("pk"), agent_id=agent.pk,
                                   status__in=[OfferStatus.PENDING, OfferStatus.ACCEPTED])
    conversations = Conversation.objects.filter(customer_id=OuterRef("pk")).filter(
        Q(assignee_id=agent.pk) | Q(queue_id__in=served_queues) | Exists(offered))
    written = Message.objects.filter(customer_id=OuterRef("pk"), author_agent_id=agent.pk)
    return Q(Exists(conversations)) | Q(Exists(written))
