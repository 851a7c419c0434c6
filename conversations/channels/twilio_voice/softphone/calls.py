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

from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

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
    """What the caller chose in the IVR, for the screen pop, each ``{"kind", "label"}`` in the
    reader's language: the language, the menu option (and how it was chosen), the queue and the
    skills it asks for, a callback asked for. From the voice channel's Call row; else choices
    recorded in messages' metadata (a call that came in before the Call row existed)."""
    from ....models import Call as CallRow

    row = (CallRow.objects.filter(conversation_id=conversation.pk).order_by("-started_at", "-id")
           .values("ivr", "language", "callback_requested").first())
    if row is not None:
        return _screen_pop(conversation, row)
    rows = (Message.objects.filter(conversation_id=conversation.pk, metadata__has_key="ivr")
            .order_by("seq", "id").values_list("metadata__ivr", flat=True)[:20])
    choices = []
    for value in rows:
        choices.extend(value if isinstance(value, list) else [value])
    return [choice for choice in choices if isinstance(choice, (dict, str))]


LANGUAGE_NAMES = {"ja": "日本語", "en": "English"}
HOW = {"keypad": gettext_lazy("keypad"), "speech": gettext_lazy("speech"), "default": gettext_lazy("no answer: default"),
       "no_menu": gettext_lazy("no menu")}


def _screen_pop(conversation: Conversation, row: dict) -> list[dict]:
    from ....models import Queue
    from ..ivr import ivr_config

    ivr = row["ivr"] if isinstance(row["ivr"], dict) else {}
    language = row["language"] or "ja"
    items = [{"kind": "language", "label": _("Language: %(language)s") % {
        "language": LANGUAGE_NAMES.get(language, language)}}]
    if ivr.get("option"):
        inbox_settings = conversation.inbox.settings if conversation.inbox_id else {}
        option = ivr_config(inbox_settings).option(str(ivr["option"]))
        label = (option.label.get(get_language()[:2]) or option.label.get(language)) if option and option.label else ""
        said = f" “{ivr['speech']}”" if ivr.get("speech") else ""
        items.append({"kind": "option", "label": _("Menu: %(option)s (%(how)s%(said)s)") % {
            "option": label or ivr["option"], "how": HOW.get(ivr.get("how", ""), ivr.get("how", "")), "said": said}})
    queue = (Queue.objects.filter(pk=conversation.queue_id).prefetch_related("required_skills").first()
             if conversation.queue_id else None)
    if queue is not None:
        items.append({"kind": "queue", "label": _("Queue: %(queue)s") % {"queue": queue.name}})
        skills = sorted(skill.name for skill in queue.required_skills.all())
        if skills:
            items.append({"kind": "skills", "label": _("Skills: %(skills)s") % {"skills": ", ".join(skills)}})
    if row["callback_requested"]:
        items.append({"kind": "callback", "label": _("Asked to be called back")})
    if ivr.get("closed_while_waiting"):
        items.append({"kind": "closed", "label": _("The queue closed while they waited")})
    return items


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
        if data.get("reason") == "consult_no_answer":
            call.consult_agent, call.consult_agent_name = None, ""
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
            # An agent whose phone rang out: the caller was sent back to <Enqueue>, out of it.
            call.state, call.agent, call.consult_agent, call.consult_agent_name = CallState.WAITING, None, None, ""
            if data.get("reason") == "no_answer":
                call.in_conference = False
    elif kind == EventType.CALL_ENDED:
        call.state, call.ended_at = CallState.ENDED, event.created_at
        call.duration_seconds = data.get("duration_seconds")
        call.consult_agent, call.consult_agent_name = None, ""
