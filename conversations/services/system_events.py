"""System events on the timeline (opened, reopened, offered, assigned, transferred, resolved …)."""

from datetime import datetime

from ..models import Agent, Conversation, Direction, Message, MessageKind


def system_event(conversation: Conversation, event_type: str, *, agent: Agent | None = None,
                 at: datetime | None = None, **data) -> Message:
    """One event row for the conversation's (and so the customer's) timeline, not saved yet and
    without its sequence number: ``system_event_record`` saves one at once, a routing decision's
    goes in with its offer (``offer_write``). ``agent`` is who caused it, if anyone."""
    fields = {"created_at": at} if at is not None else {}
    return Message(
        conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
        channel=conversation.channel, direction=Direction.INTERNAL, kind=MessageKind.EVENT,
        event_type=event_type, event_data=data, author_agent=agent, **fields,
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
