"""System events on the timeline (opened, reopened, offered, assigned, transferred, resolved …)."""

from datetime import datetime

from ..models import Agent, Conversation, Direction, Message, MessageKind


def system_event(conversation: Conversation, event_type: str, *, agent: Agent | None = None,
                 author_agent_id: int | None = None, at: datetime | None = None, **data) -> Message:
    """One event row for the conversation's (and so the customer's) timeline, not saved yet and
    without its sequence number: ``system_event_record`` saves one at once, ``system_events_record``
    several with the conversation's own changes, a routing decision's goes in with its offer
    (``offer_write``). ``agent`` is who caused it, if anyone (or only their id, ``author_agent_id``,
    when the caller has no instance and fetching one would cost a query)."""
    fields = {"created_at": at} if at is not None else {}
    author = {"author_agent": agent} if agent is not None or author_agent_id is None else {"author_agent_id": author_agent_id}
    return Message(
        conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
        channel=conversation.channel, direction=Direction.INTERNAL, kind=MessageKind.EVENT,
        event_type=event_type, event_data=data, **author, **fields,
    )


def system_event_record(conversation: Conversation, event_type: str, *, agent: Agent | None = None,
                        at: datetime | None = None, **data) -> Message:
    """Save a ``system_event`` with the conversation's next sequence number. Caller owns the
    transaction."""
    from ..sequence import message_seq_next

    event = system_event(conversation, event_type, agent=agent, at=at, **data)
    event.seq = message_seq_next(conversation)
    event.save(force_insert=True)
    return event


def system_events_record(conversation: Conversation, events: list[Message], *,
                         update_fields: list[str] | None = None) -> list[Message]:
    """Save ``events`` (``system_event``s of ``conversation``, in timeline order) with its next
    sequence numbers, and ``update_fields`` of the conversation in the same UPDATE that takes them:
    two statements however many events a change makes (resolving with a pending offer makes two),
    where recording them one by one took two each and the conversation's save one more.
    Caller holds the conversation's row lock and owns the transaction."""
    from ..sequence import conversation_save_taking_seq

    if not events:
        if update_fields:
            conversation.save(update_fields=[*update_fields, "updated_at"])
        return events
    last = conversation_save_taking_seq(conversation, update_fields, count=len(events))
    for offset, event in enumerate(events, start=last - len(events) + 1):
        event.seq = offset
    return Message.objects.bulk_create(events)
