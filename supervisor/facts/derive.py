"""The facts of one conversation, from its timeline: a pure function of the conversation's row and
its entries in sequence order, so the tick and the rebuild derive the same row however often they
run (the definitions are in docs/metrics.md).
"""

from dataclasses import dataclass
from datetime import datetime

# ``REOPENED`` with this reason is a snoozed conversation waking up, not a customer coming back.
_SNOOZE_ENDED = "snooze_ended"


@dataclass(frozen=True)
class Entry:
    """One timeline entry as the derivation needs it (notes are left out by the caller)."""

    seq: int
    created_at: datetime
    kind: str  # "message" or "event"
    direction: str
    event_type: str
    event_data: dict
    author_agent_id: int | None


@dataclass(frozen=True)
class ConversationRow:
    pk: int
    customer_id: int
    inbox_id: int
    channel: str
    queue_id: int | None
    created_at: datetime
    abandoned_at: datetime | None
    last_seq: int
    assignee_id: int | None = None


def _seconds(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds()))


def _assignee_of(entry: Entry) -> int | None:
    data = entry.event_data or {}
    if entry.event_type == "assigned":
        value = data.get("assignee", data.get("agent_id"))  # the demo's history says agent_id
    else:  # a transfer to an agent (the demo's history names it to_agent_id)
        value = data.get("to_agent", data.get("to_agent_id"))
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def conversation_facts(row: ConversationRow, entries: list[Entry], *, sla_seconds: int,
                       short_abandon_seconds: int) -> dict:
    """The ``ConversationFact`` fields (but the conversation) of ``row`` with ``entries`` in
    sequence order. ``sla_seconds`` is its queue's target."""
    first_inbound = next((e for e in entries if e.kind == "message" and e.direction == "inbound"), None)
    opened_by_agent = any(e.event_type == "created" and (e.event_data or {}).get("via") == "agent" for e in entries)
    events = [e for e in entries if e.kind == "event"]
    offered_at = next((e.created_at for e in events if e.event_type == "offered"), None)
    assigned = [e for e in events if e.event_type == "assigned"]

    entered_queue_at = None
    if first_inbound is not None and not opened_by_agent and (row.queue_id is not None or assigned or offered_at):
        entered_queue_at = first_inbound.created_at
    accepted_at = assigned[0].created_at if assigned else None

    agent_id = None
    for event in events:
        if event.event_type == "assigned" or (event.event_type == "transferred" and _assignee_of(event)):
            agent_id = _assignee_of(event) or agent_id
    if agent_id is None and accepted_at is not None:
        agent_id = row.assignee_id  # an acceptance whose event does not name the agent

    first_reply = None
    if first_inbound is not None:
        first_reply = next((e for e in entries if e.kind == "message" and e.direction == "outbound"
                            and e.author_agent_id is not None and e.seq > first_inbound.seq), None)

    abandoned_at = next((e.created_at for e in events if e.event_type == "abandoned"), None) or row.abandoned_at
    abandoned_short = bool(abandoned_at and entered_queue_at is not None
                           and _seconds(entered_queue_at, abandoned_at) < short_abandon_seconds)

    # Handling: from an acceptance (or a reopen that kept its agent) to the next resolution.
    handle_seconds = None
    segment_start = None
    reopened_pending = None
    first_resolved_at = resolved_at = None
    reopened = 0
    for event in events:
        if event.event_type == "assigned":
            if segment_start is None:
                segment_start = event.created_at
            reopened_pending = None
        elif event.event_type == "reopened":
            if (event.event_data or {}).get("reason") != _SNOOZE_ENDED:
                reopened += 1
                resolved_at = None
                if first_resolved_at is not None:
                    reopened_pending = event.created_at
        elif event.event_type == "resolved":
            start = segment_start or reopened_pending
            if start is not None:
                handle_seconds = (handle_seconds or 0) + _seconds(start, event.created_at)
            segment_start = reopened_pending = None
            first_resolved_at = first_resolved_at or event.created_at
            resolved_at = event.created_at

    wait_seconds = _seconds(entered_queue_at, accepted_at)
    return {
        "customer_id": row.customer_id,
        "channel": row.channel,
        "inbox_id": row.inbox_id,
        "queue_id": row.queue_id,
        "agent_id": agent_id,
        "started_at": row.created_at,
        "entered_queue_at": entered_queue_at,
        "first_offered_at": offered_at,
        "accepted_at": accepted_at,
        "wait_seconds": wait_seconds,
        "sla_seconds": sla_seconds if entered_queue_at is not None else None,
        "answered_within_sla": wait_seconds is not None and wait_seconds <= sla_seconds,
        "first_customer_message_at": first_inbound.created_at if first_inbound else None,
        "first_agent_reply_at": first_reply.created_at if first_reply else None,
        "first_reply_agent_id": first_reply.author_agent_id if first_reply else None,
        "first_response_seconds": _seconds(first_inbound.created_at, first_reply.created_at) if first_reply else None,
        "transfers": sum(1 for e in events if e.event_type == "transferred"),
        "first_resolved_at": first_resolved_at,
        "resolved_at": resolved_at,
        "reopened": reopened,
        "abandoned_at": abandoned_at,
        "abandoned_short": abandoned_short,
        "handle_seconds": handle_seconds,
        "source_seq": row.last_seq,
    }
