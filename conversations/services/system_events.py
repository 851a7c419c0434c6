"""System events on the timeline (opened, reopened, offered, assigned, transferred, resolved …)."""

from datetime import datetime

from ..models import Agent, Conversation, Direction, Message, MessageKind


def system_event_record(conversation: Conversation, event_type: str, *, agent: Agent | None = None,
                        at: datetime | None = None, **data) -> Message:
    """One event row on the conversation's (and so the customer's) timeline. Caller owns the
    transaction; ``agent`` is who caused it, if anyone."""
    from ..sequence import message_seq_next

    fields = {"created_at": at} if at is not None else {}
    return Message.objects.create(
        seq=message_seq_next(conversation), conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
        channel=conversation.channel, direction=Direction.INTERNAL, kind=MessageKind.EVENT,
        event_type=event_type, event_data=data, author_agent=agent, **fields,
    )
