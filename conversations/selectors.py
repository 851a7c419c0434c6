"""Reads on conversations, with fixed query counts (STYLE.md habit 6)."""

from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.db.models.fields.json import KT
from django.http import Http404

from contactcenter.permissions import is_contact_center_staff

from .models import Agent, Attachment, Conversation, Message


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


SUPERVISOR_GROUPS = ("supervisor", "admin")


def is_supervisor(user) -> bool:
    return bool(user and user.is_authenticated) and (
        user.is_superuser or user.groups.filter(name__in=SUPERVISOR_GROUPS).exists()
    )


def agent_of(user) -> Agent | None:
    if not user or not user.is_authenticated:
        return None
    return Agent.objects.filter(user=user).select_related("presence").first()


def access_conversation(*, user, conversation_id, agent: Agent | None = None) -> Conversation:
    """The conversation if ``user`` may see it, else ``Http404`` (a stranger's ids give 404, never
    403). Supervisors see every conversation; agents those assigned or offered to them and those
    waiting in a queue whose skills they have."""
    try:
        conversation_id = int(conversation_id)
    except (TypeError, ValueError):
        raise Http404 from None
    if not is_contact_center_staff(user):
        raise Http404
    conversation = (
        Conversation.objects.select_related("queue", "assignee", "customer", "inbox").filter(pk=conversation_id).first()
    )
    if conversation is None:
        raise Http404
    if is_supervisor(user):
        return conversation
    agent = agent or Agent.objects.filter(user=user).first()
    if agent is None:
        raise Http404
    if conversation.assignee_id == agent.pk or conversation.offers.filter(agent=agent).exists():
        return conversation
    if conversation.queue_id and conversation.assignee_id is None:
        from .routing.selection import agent_serves

        if agent_serves(agent_id=agent.pk, queue_id=conversation.queue_id):
            return conversation
    raise Http404
