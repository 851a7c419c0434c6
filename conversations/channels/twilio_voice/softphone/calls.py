"""Reads: the state of a conversation's call, folded from its timeline.

Every control writes one system event (``controls``); the state is the fold of those events in
sequence order, so it is the same for every console that reads it, survives reconnects, and needs
no second record that could disagree with the timeline.

Seam with the server side of voice (``conversations.channels.twilio_voice``, built beside this): the
customer's call SID and the IVR choices are read from the conversation's messages' ``metadata``
(``call_sid``, ``ivr``), which the inbound webhook writes and click-to-call writes too. When the
``Call`` model lands, ``customer_call_sid`` and ``ivr_choices`` read it instead.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime

from ....models import Conversation, EventType, Message

CALL_EVENT_TYPES = (
    EventType.CALL_PLACED, EventType.CALL_CONNECTED, EventType.CALL_HELD, EventType.CALL_RESUMED,
    EventType.CALL_CONSULT, EventType.CALL_JOINED, EventType.CALL_LEFT, EventType.CALL_ENDED,
)


class CallState:
    NONE = "none"              # no call on this conversation
    WAITING = "waiting"        # the caller waits for an agent (queued, or handed on by a cold transfer)
    CONNECTED = "connected"    # agent and customer talk
    HELD = "held"              # the customer hears hold music
    CONSULTING = "consulting"  # the customer is on hold while the agent talks to a colleague
    CONFERENCE = "conference"  # agent, colleague and customer together
    ENDED = "ended"            # hung up: wrap-up until the agent resolves


@dataclass
class Call:
    state: str = CallState.NONE
    call_sid: str = ""
    agent: int | None = None            # the agent on the call
    consult_agent: int | None = None    # the colleague consulted in a warm transfer
    consult_agent_name: str = ""
    in_conference: bool = False         # the customer is in the conversation's conference already
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    answered_on: str = ""
    ivr: list = field(default_factory=list)

    def as_json(self) -> dict:
        data = asdict(self)
        for key in ("connected_at", "ended_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def customer_call_sid(conversation: Conversation) -> str:
    """The SID of the customer's leg of the conversation's newest call ("" when none): the voice
    channel's Call row (the callback's leg when we called them back), else a call recorded in a
    message's metadata (click-to-call)."""
    from ....models import Call as CallRow

    row = (CallRow.objects.filter(conversation_id=conversation.pk).order_by("-started_at", "-id")
           .values_list("call_sid", "callback_call_sid").first())
    if row is not None:
        return row[1] or row[0]
    value = (
        Message.objects.filter(conversation_id=conversation.pk, metadata__has_key="call_sid")
        .order_by("-seq", "-id").values_list("metadata__call_sid", flat=True).first()
    )
    return str(value or "")


def ivr_choices(conversation: Conversation) -> list:
    """What the caller chose in the IVR, oldest first (each a small dict the server side wrote):
    the voice channel's Call row, else choices recorded in messages' metadata."""
    from ....models import Call as CallRow

    ivr = (CallRow.objects.filter(conversation_id=conversation.pk).order_by("-started_at", "-id")
           .values_list("ivr", flat=True).first())
    if ivr:
        return list(ivr) if isinstance(ivr, list) else [ivr]
    rows = (Message.objects.filter(conversation_id=conversation.pk, metadata__has_key="ivr")
            .order_by("seq", "id").values_list("metadata__ivr", flat=True)[:20])
    choices = []
    for value in rows:
        choices.extend(value if isinstance(value, list) else [value])
    return [choice for choice in choices if isinstance(choice, (dict, str))]


def call_of(conversation: Conversation) -> Call:
    """The conversation's call as its events tell it (three queries)."""
    call = Call(call_sid=customer_call_sid(conversation), ivr=ivr_choices(conversation))
    if not call.call_sid:
        return call
    call.state = CallState.WAITING
    events = (Message.objects.filter(conversation_id=conversation.pk, event_type__in=CALL_EVENT_TYPES)
              .order_by("seq", "id").only("event_type", "event_data", "author_agent_id", "created_at"))
    for event in events:
        _apply(call, event)
    return call


def _apply(call: Call, event: Message) -> None:
    data, kind = event.event_data or {}, event.event_type
    if kind in (EventType.CALL_PLACED, EventType.CALL_CONNECTED):
        if call.state == CallState.ENDED or call.connected_at is None:
            call.connected_at, call.ended_at, call.duration_seconds = event.created_at, None, None
        call.state, call.agent, call.in_conference = CallState.CONNECTED, event.author_agent_id, True
        call.answered_on = str(data.get("answered_on", ""))
    elif kind == EventType.CALL_HELD:
        call.state = CallState.HELD
    elif kind == EventType.CALL_RESUMED:
        call.state = CallState.CONNECTED
    elif kind == EventType.CALL_CONSULT:
        call.state, call.consult_agent = CallState.CONSULTING, data.get("to_agent")
        call.consult_agent_name = str(data.get("to_agent_name", ""))
    elif kind == EventType.CALL_JOINED:
        call.state = CallState.CONFERENCE
    elif kind == EventType.CALL_LEFT:
        if data.get("to_agent"):
            # Warm transfer completed: the colleague has the customer now.
            call.state, call.agent, call.consult_agent = CallState.CONNECTED, data["to_agent"], None
            call.consult_agent_name = ""
        else:
            # Cold transfer: the customer holds in the conference until the next agent answers.
            call.state, call.agent, call.consult_agent, call.consult_agent_name = CallState.WAITING, None, None, ""
    elif kind == EventType.CALL_ENDED:
        call.state, call.ended_at = CallState.ENDED, event.created_at
        call.duration_seconds = data.get("duration_seconds")
        call.consult_agent, call.consult_agent_name = None, ""
