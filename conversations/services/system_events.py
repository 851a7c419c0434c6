"""System events on the timeline (opened, reopened, offered, assigned, transferred, resolved …)."""

from datetime import datetime

from ..models import Agent, Conversation, Direction, Message, MessageKind


def system_event_record(conversation: Conversation, event_type: str, *, agent: Agent | None = None,
                        at: datetime | None = None, seq: int | None = None, **data) -> Message:
    """One event row on the conversation's (and so the customer's) timeline. Caller owns the
    transaction; ``agent`` is who caused it, if anyone; ``seq`` when the caller already took the
    number (``conversation_save_taking_seq``)."""
    from ..sequence import message_seq_next

    fields = {"created_at": at} if at is not None else {}
    return Message.objects.create(
        seq=seq if seq is not None else message_seq_next(conversation), conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
        channel=conversation.channel, direction=Direction.INTERNAL, kind=MessageKind.EVENT,
        event_type=event_type, event_data=data, author_agent=agent, **fields,
    )
