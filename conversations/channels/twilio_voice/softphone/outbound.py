"""Click-to-call from the customer 360.

Refused, with the reason in the agent's language, when the customer opted out of calls (a
``voice`` consent record for their number) or when it is outside their local calling hours
(``CC_CALLING_HOURS``, default 09:00–20:00, in the customer's time zone, else
``CC_DEFAULT_TIME_ZONE``). Otherwise the customer's call is created through the real Twilio client
(recorded locally without credentials) into the conversation's conference, and the agent's leg is
added to it, as when they answer an inbound call.
"""

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from profiles.models import Customer, IdentityKind
from profiles.selectors import consent_check

from ....models import (
    ACTIVE_STATUSES,
    Agent,
    Channel,
    Conversation,
    ConversationStatus,
    EventType,
    Inbox,
)
from ....services.system_events import system_event_record
from ...twilio_client import twilio_client
from .calls import Call, CallState, call_of
from .controls import (
    agent_endpoint,
    call_event_record,
    conference_agent_add,
    customer_join_twiml,
    twilio_request,
)

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class CallRefused(ValidationError):
    """The customer may not be called now; the message says why."""


def calling_hours() -> tuple[time, time]:
    match = _HOURS.match(settings.CC_CALLING_HOURS or "")
    if not match:
        raise ImproperlyConfigured(f"CC_CALLING_HOURS must look like 09:00-20:00, not {settings.CC_CALLING_HOURS!r}")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    return time(start_h, start_m), time(min(end_h, 23), end_m if end_h < 24 else 59)


def customer_time_zone(customer: Customer) -> ZoneInfo:
    """The customer's own time zone, else the contact center's (an unknown name counts as none)."""
    for name in (customer.time_zone, settings.CC_DEFAULT_TIME_ZONE):
        if not name:
            continue
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def within_calling_hours(customer: Customer, *, now: datetime | None = None) -> tuple[bool, datetime]:
    """Whether it is within the calling hours where the customer is, and their local time."""
    zone = customer_time_zone(customer)
    local = (now or timezone.now()).astimezone(zone)
    start, end = calling_hours()
    return start <= local.time() < end, local


def customer_phone(customer: Customer) -> str:
    return (customer.identities.filter(kind=IdentityKind.PHONE).order_by("-last_seen_at", "-id")
            .values_list("value", flat=True).first() or "")


def _voice_inbox(customer: Customer) -> Inbox | None:
    used = (Conversation.objects.filter(customer=customer, channel=Channel.VOICE, inbox__is_active=True)
            .order_by("-last_message_at", "-id").select_related("inbox").first())
    if used is not None:
        return used.inbox
    return Inbox.objects.filter(kind=Channel.VOICE, is_active=True).order_by("id").first()


def call_check(*, customer: Customer, now: datetime | None = None) -> tuple[str, Inbox]:
    """The number to call and the inbox to call from, or ``CallRefused`` saying why not."""
    phone = customer_phone(customer)
    if not phone:
        raise CallRefused(_("The customer has no phone number."), code="no_phone")
    inbox = _voice_inbox(customer)
    if inbox is None:
        raise CallRefused(_("No voice inbox is set up."), code="no_inbox")
    decision = consent_check(channel=Channel.VOICE, address=phone, sender=inbox.address)
    if not decision.allowed:
        raise CallRefused(_("Not called: %(reason)s."), code="opted_out", params={"reason": decision.reason})
    allowed, local = within_calling_hours(customer, now=now)
    if not allowed:
        start, end = calling_hours()
        raise CallRefused(
            _("Not called: it is %(local)s for the customer (%(zone)s); calls are allowed from %(start)s to %(end)s "
              "their time."), code="calling_hours",
            params={"local": local.strftime("%H:%M"), "zone": getattr(local.tzinfo, "key", ""),
                    "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")})
    return phone, inbox


def _conversation_for_call(*, customer: Customer, inbox: Inbox, agent: Agent) -> Conversation:
    """The agent's active voice conversation with the customer, else a new one assigned to them."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update(no_key=True).get(pk=customer.pk)
        existing = (Conversation.objects.filter(customer=customer, channel=Channel.VOICE, assignee=agent,
                                                status__in=ACTIVE_STATUSES)
                    .select_related("inbox").order_by("-id").first())
        if existing is not None:
            return existing
        now = timezone.now()
        conversation = Conversation.objects.create(
            customer=customer, inbox=inbox, channel=Channel.VOICE, status=ConversationStatus.OPEN,
            queue=inbox.default_queue, assignee=agent, assigned_at=now, created_at=now, last_message_at=now,
            routing_note=f"call placed by {agent.display_name}"[:300])
        system_event_record(conversation, EventType.CREATED, agent=agent, via="click_to_call")
    return conversation


ON_A_CALL = (CallState.CONNECTED, CallState.HELD, CallState.CONSULTING, CallState.CONFERENCE)


def agent_on_a_call(agent: Agent) -> bool:
    """Whether a call of one of the agent's voice conversations is going on (voice capacity is 1)."""
    mine = Conversation.objects.filter(assignee=agent, channel=Channel.VOICE, status__in=ACTIVE_STATUSES)
    return any(call_of(conversation).state in ON_A_CALL for conversation in mine.order_by("-id")[:10])


def call_place(*, customer: Customer, agent: Agent, now: datetime | None = None) -> tuple[Conversation, Call]:
    """Call the customer (click-to-call). Refusals (opted out, calling hours, no number, no voice
    inbox, no phone of the agent's) come before anything is stored or requested."""
    phone, inbox = call_check(customer=customer, now=now)
    agent_endpoint(agent)
    if agent_on_a_call(agent):
        raise CallRefused(_("You are on another call: hang up first."), code="agent_on_call")
    conversation = _conversation_for_call(customer=customer, inbox=inbox, agent=agent)
    current = call_of(conversation)
    if current.state not in (CallState.NONE, CallState.ENDED):
        raise CallRefused(_("A call is already going on in this conversation."), code="call_in_progress")
    client = twilio_client()
    placed = twilio_request(lambda: client.calls.create(to=phone, from_=conversation.inbox.address,
                                                 twiml=customer_join_twiml(conversation.pk)))
    conference_agent_add(client, conversation, agent)
    call = call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_PLACED, agent=agent,
                             metadata={"call_sid": placed.sid}, to=phone, answered_on=agent.voice_answer_on)
    return conversation, call
