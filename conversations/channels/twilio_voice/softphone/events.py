"""The softphone's websocket event: one builder, and who hears it.

``conversation.call`` is a change of the conversation (its call), so the console's own handling
of ``conversation.*`` refreshes the timeline where it is shown; the softphone reads ``call``.
"""

from ....events import conversation_recipients
from ....groups import customer_group
from .calls import Call


def call_event(conversation, call: Call, event) -> dict:
    return {"type": "conversation.call", "conversation": conversation.pk, "customer": conversation.customer_id,
            "status": conversation.status, "assignee": conversation.assignee_id, "event": event.event_type,
            "seq": event.seq, "call": call.as_json(), "by": event.author_agent_id,
            # The colleague asked in has no access to the conversation yet: who is asking.
            "from_name": event.author_agent.display_name if event.author_agent_id and event.author_agent else ""}


def call_recipients(conversation, call: Call) -> list[str]:
    """The conversation's watchers, the supervisors, the customer's timeline readers, and the
    agents on the call (the colleague being consulted is rung through their own group)."""
    groups = conversation_recipients(conversation.pk, conversation.assignee_id, call.agent, call.consult_agent)
    return list(dict.fromkeys([*groups, customer_group(conversation.customer_id)]))
