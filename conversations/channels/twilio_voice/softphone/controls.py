"""Call controls: answer, hold, resume, cold and warm transfer, hang up.

Every call an agent takes goes through a ``<Conference>`` named after the conversation
(twilio.md §3: transfers work best that way), and ``call_put_through`` is the one way in: the
waiting caller is redirected out of ``<Enqueue>`` into it (or called back into it), with the label
``customer``, and the agent's endpoint is added as a participant labelled with their client
identity. The Answer button and the assignment's task (``conversations.voice_put_through``) both
call it; a claim on the call makes it happen once per assignment. Hold is the
customer participant's ``hold``; a cold transfer holds the customer and takes the agent out; a warm
transfer holds the customer, adds the colleague, joins everyone, then the first agent leaves.

Each control is one Twilio REST request or a few (``twilio_client()``: without credentials they
are recorded locally and answered as Twilio would), made *before* the transaction that records the
control on the timeline (no network call inside a transaction): a request Twilio refuses records
nothing. Callers have checked access (``access_conversation``); these check who may drive the call.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from twilio.base.exceptions import TwilioException
from twilio.twiml.voice_response import Dial, VoiceResponse

from ....events import send_on_commit
from ....models import (
    CALL_FINAL_STATUSES,
    Agent,
    CallOutcome,
    Conversation,
    ConversationStatus,
    EventType,
    OfferStatus,
    Queue,
    VoiceAnswerOn,
)
from ....models import Call as CallRow
from ....routing.assignment import conversation_transfer
from ....routing.offers import offer_accept, pending_offers_rescind
from ....routing.presence import agent_send_away_after_missed
from ....services.system_events import system_event
from ...twilio_client import twilio_client
from .. import calls as voice_calls
from .. import twiml
from ..twiml import CUSTOMER_LABEL, conference_name
from .calls import Call, CallState, call_of
from .events import call_event, call_recipients
from .token import agent_identity


class CallControlError(ValidationError):
    """The control cannot be used now (no call, not the agent on it, Twilio refused…)."""


def customer_join_twiml(conversation_id: int) -> str:
    """What the customer's leg plays to join the conversation's conference: it waits there (hold
    music) until an agent joins, and its hanging up ends the conference for everyone."""
    response = VoiceResponse()
    dial = Dial()
    dial.conference(conference_name(conversation_id), participant_label=CUSTOMER_LABEL, beep=False,
                    start_conference_on_enter=False, end_conference_on_exit=True)
    response.append(dial)
    return str(response)


def agent_endpoint(agent: Agent) -> str:
    """Where the agent's leg rings: their browser (``client:agent_7``) or their own phone."""
    if agent.voice_answer_on == VoiceAnswerOn.PHONE:
        if not agent.voice_phone_number:
            raise CallControlError(_("Add your phone number to your softphone settings, or answer in the browser."),
                                   code="no_agent_phone")
        return agent.voice_phone_number
    return f"client:{agent_identity(agent.pk)}"


def twilio_request(action):
    """Run one Twilio SDK request; a refusal (or no answer) becomes a ``CallControlError`` in words."""
    try:
        return action()
    except TwilioException as exc:
        raise CallControlError(_("Twilio refused the request: %(reason)s"), code="twilio_refused",
                               params={"reason": getattr(exc, "msg", None) or str(exc)}) from exc


def _conference_sid(client, conversation_id: int) -> str:
    name = conference_name(conversation_id)
    found = twilio_request(lambda: client.conferences.list(friendly_name=name, status="in-progress", limit=1))
    if not found:
        raise CallControlError(_("The call is no longer connected."), code="no_conference")
    return found[0].sid


def conference_agent_add(client, conversation: Conversation, agent: Agent) -> None:
    """Ring ``agent``'s endpoint into the conversation's conference. Its leg's status comes back
    to ``AGENT_LEG`` (signed): a leg nobody answers puts the caller back in line."""
    endpoint = agent_endpoint(agent)
    status_url = twiml.public_base() + twiml.with_query(twiml.AGENT_LEG, conversation=conversation.pk, agent=agent.pk)
    twilio_request(lambda: client.conferences(conference_name(conversation.pk)).participants.create(
        from_=conversation.inbox.address, to=endpoint, label=agent_identity(agent.pk), early_media=True, beep="false",
        start_conference_on_enter=True, end_conference_on_exit=False, timeout=30,
        status_callback=status_url, status_callback_method="POST",
        status_callback_event=["answered", "completed"]))


def _customer_hold(client, conversation: Conversation, hold: bool) -> None:
    sid = _conference_sid(client, conversation.pk)
    twilio_request(lambda: client.conferences(sid).participants(CUSTOMER_LABEL).update(hold=hold))


def _agent_remove(client, conversation: Conversation, agent_id: int) -> None:
    sid = _conference_sid(client, conversation.pk)
    twilio_request(lambda: client.conferences(sid).participants(agent_identity(agent_id)).delete())


def call_event_record(*, conversation_id: int, event_type: str, agent: Agent | None, metadata: dict | None = None,
                      **data) -> Call:
    """Put one call event on the timeline and tell the consoles concerned after commit; returns the
    call as it stands then. Also the seam for the server side of voice (the customer hung up:
    ``CALL_ENDED`` with ``ended_by="customer"``)."""
    from ....sequence import message_seq_next

    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        event = system_event(conversation, event_type, agent=agent, **data)
        event.metadata = metadata or {}
        event.seq = message_seq_next(conversation)
        event.save(force_insert=True)
        call = call_of(conversation)
        send_on_commit(call_recipients(conversation, call), call_event(conversation, call, event))
    return call


def _require_call(conversation: Conversation, agent: Agent, *states: str) -> Call:
    call = call_of(conversation)
    if not call.call_sid:
        raise CallControlError(_("There is no call in this conversation."), code="no_call")
    if call.agent != agent.pk:
        raise CallControlError(_("Only the agent on the call can do that."), code="not_on_call")
    if states and call.state not in states:
        raise CallControlError(_("Not possible while the call is %(state)s."), code="call_state",
                               params={"state": call.state})
    return call


def call_answer(*, conversation: Conversation, agent: Agent) -> Call:
    """The agent answers: their pending offer is accepted (or the conversation is theirs already,
    after a transfer or an assignment), then the caller is put through (``call_put_through``)."""
    call = call_of(conversation)
    if not call.call_sid:
        raise CallControlError(_("There is no call in this conversation."), code="no_call")
    if call.state != CallState.WAITING:
        raise CallControlError(_("This call has already been answered."), code="call_answered")
    agent_endpoint(agent)  # refused before anything moves when the agent has no phone
    if conversation.assignee_id != agent.pk:
        offer = conversation.offers.filter(agent=agent, status=OfferStatus.PENDING).first()
        if offer is None:
            raise CallControlError(_("This call is not offered to you."), code="not_offered")
        # Accepted first: if Twilio then fails, the call is already theirs and Answer again retries.
        offer_accept(offer_id=offer.pk, agent=agent)
    call_put_through(conversation_id=conversation.pk, agent=agent)
    return call_of(conversation)


class PutThrough:
    REDIRECT = "redirect"  # the caller waits on <Enqueue>: redirected into the conference
    CALLBACK = "callback"  # the caller kept their place and hung up: we call them into it
    RESUME = "resume"      # the caller holds in the conference already (a cold transfer)


def _put_through_claim(conversation_id: int, agent: Agent) -> tuple[Conversation, CallRow | None, str] | str:
    """Under the conversation's lock, then the call's (the order every writer of a call takes):
    whether this assignment still needs its caller put through, and how; claims it when so."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().select_related("inbox").get(pk=conversation_id)
        row = (CallRow.objects.select_for_update().filter(conversation_id=conversation.pk)
               .order_by("-started_at", "-id").first())
        if conversation.assignee_id != agent.pk or conversation.status == ConversationStatus.RESOLVED:
            return "not_assigned"
        if row is None:
            # A call the agent placed (click-to-call) and handed on: its customer holds in the
            # conference; no Call row to claim (the conversation's lock orders the Answers).
            call = call_of(conversation)
            return (conversation, None, PutThrough.RESUME) if call.state == CallState.WAITING and call.in_conference \
                else "no_call"
        if row.connected_for is not None and row.connected_for == conversation.assigned_at:
            return "claimed"  # the Answer button and the assignment's task: the first one did it
        if row.outcome == CallOutcome.VOICEMAIL:
            return "voicemail"
        if row.callback_requested and not row.callback_call_sid:
            mode = PutThrough.CALLBACK  # their own call ended when they hung up to wait
        elif call_of(conversation).state != CallState.WAITING:
            return "not_waiting"
        elif row.callback_call_sid or row.status not in CALL_FINAL_STATUSES:
            mode = PutThrough.RESUME if call_of(conversation).in_conference else PutThrough.REDIRECT
        else:
            return "ended"
        row.connected_for, row.agent, row.agent_call_sid = conversation.assigned_at, agent, ""
        row.save(update_fields=["connected_for", "agent", "agent_call_sid", "updated_at"])
    return conversation, row, mode


def call_put_through(*, conversation_id: int, agent: Agent) -> str:
    """Join the caller of a voice conversation assigned to ``agent`` and the agent in the
    conversation's conference: the caller's call is redirected (Twilio REST ``calls(sid).update``)
    from ``<Enqueue>`` to our conference TwiML, or called back into it (``calls.create``), or taken
    off hold in it; the agent's browser or phone is added as a participant. Returns how, or why
    nothing was done (not theirs any more, done already, the caller gone). Idempotent."""
    endpoint = agent_endpoint(agent)
    claimed = _put_through_claim(conversation_id, agent)
    if isinstance(claimed, str):
        return claimed
    conversation, row, mode = claimed
    client = twilio_client()
    base = twiml.public_base()
    join_url = base + twiml.with_query(twiml.CONFERENCE, call=row.pk if row else "")
    try:
        if mode == PutThrough.CALLBACK:
            placed = twilio_request(lambda: client.calls.create(
                to=row.callback_number, from_=conversation.inbox.address, url=join_url, method="POST",
                status_callback=base + twiml.STATUS, status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"]))
            voice_calls.callback_started(call_id=row.pk, callback_sid=placed.sid, agent_id=agent.pk)
        elif mode == PutThrough.REDIRECT:
            # The customer's leg: their own call, or our callback to them once it was placed.
            customer_sid = row.callback_call_sid or row.call_sid
            twilio_request(lambda: client.calls(customer_sid).update(url=join_url, method="POST"))
        conference_agent_add(client, conversation, agent)
        if mode == PutThrough.RESUME:
            _customer_hold(client, conversation, False)
    except CallControlError:
        # Nothing was put through: the next Answer (or the task's retry) tries again.
        if row is not None:
            CallRow.objects.filter(pk=row.pk, connected_for=row.connected_for).update(connected_for=None)
        raise
    with transaction.atomic():
        if row is not None:
            voice_calls.call_answered(call_id=row.pk, agent=agent)
        call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_CONNECTED, agent=agent,
                          answered_on=agent.voice_answer_on, how=mode,
                          endpoint_kind="client" if endpoint.startswith("client:") else "phone")
    return mode


def call_agent_missed(*, conversation_id: int, agent_id: int, leg_status: str) -> bool:
    """The agent's leg was not answered (no answer, busy, failed): the call was never theirs to
    talk on. The conversation goes back to its queue in the same place in line (its
    ``queued_at`` is kept), routing offers it again, and the caller, alone in the conference, is
    redirected back to ``<Enqueue>`` (our requeue TwiML says why). A colleague's leg asked in
    for a warm transfer that is not answered ends the consult instead (the caller holds, the
    first agent keeps the call). False when it had moved on."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        row = (CallRow.objects.select_for_update().filter(conversation_id=conversation.pk)
               .order_by("-started_at", "-id").first())
        call = call_of(conversation)
        if call.state == CallState.CONSULTING and call.consult_agent == agent_id:
            # The colleague asked in (warm transfer) did not answer: the consult is over, the
            # caller stays on hold with the first agent, who may resume or try someone else.
            call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_HELD,
                              agent=Agent.objects.filter(pk=call.agent).first(), reason="consult_no_answer",
                              leg_status=leg_status[:20])
            return True
        if (row is None or conversation.assignee_id != agent_id or row.agent_id != agent_id or row.agent_call_sid
                or call.state != CallState.CONNECTED or call.agent != agent_id):
            return False
        customer_sid = row.callback_call_sid or row.call_sid
        voice_calls.call_missed_by_agent(conversation, row, leg_status=leg_status, at=now)
        call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_LEFT,
                          agent=Agent.objects.get(pk=agent_id), reason="no_answer", leg_status=leg_status[:20])
        # As for an offer that timed out: before routing (queued on commit) looks for an agent.
        sent_away = agent_send_away_after_missed(agent_id, now)
    if sent_away:
        with transaction.atomic():
            pending_offers_rescind(agent_id, now)
    url = twiml.public_base() + twiml.with_query(twiml.REQUEUE, call=row.pk)
    client = twilio_client()
    try:
        twilio_request(lambda: client.calls(customer_sid).update(url=url, method="POST"))
    except CallControlError:
        # The caller hung up meanwhile: their status callback ends the call.
        pass
    return True


def call_agent_leg_answered(*, conversation_id: int, agent_id: int, leg_sid: str) -> None:
    CallRow.objects.filter(conversation_id=conversation_id, agent_id=agent_id, agent_call_sid="").exclude(
        connected_for=None).update(agent_call_sid=leg_sid[:64])


def call_hold(*, conversation: Conversation, agent: Agent) -> Call:
    _require_call(conversation, agent, CallState.CONNECTED)
    _customer_hold(twilio_client(), conversation, True)
    return call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_HELD, agent=agent)


def call_resume(*, conversation: Conversation, agent: Agent) -> Call:
    _require_call(conversation, agent, CallState.HELD)
    _customer_hold(twilio_client(), conversation, False)
    return call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_RESUMED, agent=agent)


def call_hang_up(*, conversation: Conversation, agent: Agent) -> Call:
    """The agent ends the call. When a post-call survey applies (``lifecycle.call_survey``: the
    surveys app decides), the caller is redirected out of the conference to the keypad survey in
    their language (their leaving ends the conference and the agent's leg); else the customer's
    leg completes, which ends the conference for everyone. The conversation stays the agent's, in
    wrap-up, holding their voice capacity until they resolve."""
    call = _require_call(conversation, agent, CallState.CONNECTED, CallState.HELD, CallState.CONSULTING,
                         CallState.CONFERENCE)
    return _call_end(conversation, agent, call, ended_by="agent")


def _call_end(conversation: Conversation, agent: Agent, call: Call, *, ended_by: str) -> Call:
    client = twilio_client()
    row = CallRow.objects.filter(conversation_id=conversation.pk).order_by("-started_at", "-id").first()
    # The survey is recorded as sent in the transaction that Twilio's answer to the redirect
    # ends: a redirect refused (the caller gone meanwhile) leaves no survey marked sent that was
    # never played, and the conversation may still be surveyed after the resolve.
    with transaction.atomic():
        survey = _post_call_survey(conversation, row) if row is not None else None
        if survey:
            url = twiml.public_base() + twiml.with_query(twiml.SURVEY, call=row.pk)
            twilio_request(lambda: client.calls(call.call_sid).update(url=url, method="POST"))
    if not survey:
        twilio_request(lambda: client.calls(call.call_sid).update(status="completed"))
    duration = int((timezone.now() - call.connected_at).total_seconds()) if call.connected_at else None
    return call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_ENDED, agent=agent,
                             ended_by=ended_by, to_survey=bool(survey), **call_duration(duration))


def call_agent_left(*, conversation_id: int, agent_id: int, leg_sid: str) -> bool:
    """The leg of the agent on the call ended by itself (they hung up their phone, closed the
    browser) with the caller still there: as if they had pressed Hang up (the survey, or the end).
    Not when the conference ended because the caller left or was taken to the survey (the call
    is over by then), nor for a leg that is not the one that answered. False when nothing to do."""
    conversation = Conversation.objects.select_related("inbox").filter(pk=conversation_id).first()
    row = (CallRow.objects.filter(conversation_id=conversation_id).order_by("-started_at", "-id").first()
           if conversation else None)
    if row is None or not leg_sid or row.agent_call_sid != leg_sid or row.status in CALL_FINAL_STATUSES:
        return False
    call = call_of(conversation)
    if call.agent != agent_id or call.state not in (CallState.CONNECTED, CallState.HELD):
        return False
    try:
        # The caller's hanging up ends the conference too, and its status callback may come after
        # this one: only a caller still on the line is taken to the survey.
        client = twilio_client()
        if twilio_request(lambda: client.calls(call.call_sid).fetch()).status != "in-progress":
            return False
        _call_end(conversation, Agent.objects.get(pk=agent_id), call, ended_by="agent_left")
    except CallControlError:
        return False  # the caller's leg is gone too: its status callback ends the call
    return True


def _post_call_survey(conversation: Conversation, row: CallRow) -> dict | None:
    """The keypad survey to play the caller once the agent has left, when one applies (kept on the
    call: its webhook asks it again on a retry); None otherwise."""
    from .... import lifecycle

    survey = lifecycle.call_survey(conversation_id=conversation.pk)
    if survey:
        voice_calls.call_survey_started(call_id=row.pk, survey=survey)
    return survey


def call_duration(seconds: int | None) -> dict:
    """The duration fields of a ``CALL_ENDED`` event: seconds, and "m:ss" for the timeline."""
    if seconds is None:
        return {"duration_seconds": None, "duration": ""}
    seconds = max(0, int(seconds))
    return {"duration_seconds": seconds, "duration": f"{seconds // 60}:{seconds % 60:02d}"}


def _transfer_target(conversation: Conversation, *, to_agent: Agent | None, to_queue: Queue | None) -> None:
    """Checked before the call moves: a transfer the routing would refuse must not leave the
    customer on hold with nobody."""
    if (to_agent is None) == (to_queue is None):
        raise CallControlError(_("Transfer to an agent or to a queue."), code="transfer_target")
    if to_queue is not None and not to_queue.takes(conversation.channel):
        raise CallControlError(_("%(queue)s does not take %(channel)s conversations."), code="queue_channel",
                               params={"queue": to_queue.name, "channel": conversation.get_channel_display()})
    if conversation.status == ConversationStatus.RESOLVED:
        raise CallControlError(_("This conversation is resolved."), code="resolved")


def call_transfer_cold(*, conversation: Conversation, agent: Agent, note: str, to_agent: Agent | None = None,
                       to_queue: Queue | None = None) -> Call:
    """Hand the caller on: they hold in the conference, this agent leaves, and the conversation goes
    to the colleague or the queue with the handoff note (``conversation_transfer``), whose answer
    takes them off hold."""
    _require_call(conversation, agent, CallState.CONNECTED, CallState.HELD)
    if to_agent is not None and to_agent.pk == agent.pk:
        raise CallControlError(_("You are already on this call."), code="transfer_target")
    _transfer_target(conversation, to_agent=to_agent, to_queue=to_queue)
    client = twilio_client()
    _customer_hold(client, conversation, True)
    _agent_remove(client, conversation, agent.pk)
    with transaction.atomic():
        # One transaction: the transfer (with its note), then the agent leaving the call, recorded
        # once the new assignee is known, so a colleague it went to is rung by the call event.
        conversation_transfer(conversation_id=conversation.pk, by=agent, note=note, to_agent=to_agent,
                              to_queue=to_queue)
        call = call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_LEFT, agent=agent,
                                 reason="transfer")
    return call


def call_consult(*, conversation: Conversation, agent: Agent, colleague: Agent) -> Call:
    """Warm transfer, step 1: the customer holds while the colleague's leg joins the conference."""
    _require_call(conversation, agent, CallState.CONNECTED, CallState.HELD)
    if colleague.pk == agent.pk:
        raise CallControlError(_("Choose a colleague to consult."), code="transfer_target")
    _transfer_target(conversation, to_agent=colleague, to_queue=None)
    client = twilio_client()
    _customer_hold(client, conversation, True)
    conference_agent_add(client, conversation, colleague)
    return call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_CONSULT, agent=agent,
                             to_agent=colleague.pk, to_agent_name=colleague.display_name)


def call_consult_join(*, conversation: Conversation, agent: Agent) -> Call:
    """Warm transfer, step 2: the customer comes off hold; all three talk."""
    _require_call(conversation, agent, CallState.CONSULTING)
    _customer_hold(twilio_client(), conversation, False)
    return call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_JOINED, agent=agent)


def call_consult_leave(*, conversation: Conversation, agent: Agent, note: str = "") -> Call:
    """Warm transfer, step 3: this agent leaves; the colleague has the call and the conversation."""
    call = _require_call(conversation, agent, CallState.CONSULTING, CallState.CONFERENCE)
    colleague = Agent.objects.filter(pk=call.consult_agent).first()
    if colleague is None:
        raise CallControlError(_("Nobody to hand the call to."), code="transfer_target")
    client = twilio_client()
    if call.state == CallState.CONSULTING:
        _customer_hold(client, conversation, False)
    _agent_remove(client, conversation, agent.pk)
    with transaction.atomic():
        conversation_transfer(conversation_id=conversation.pk, by=agent, note=note, to_agent=colleague)
        call = call_event_record(conversation_id=conversation.pk, event_type=EventType.CALL_LEFT, agent=agent,
                                 to_agent=colleague.pk, to_agent_name=colleague.display_name, reason="warm_transfer")
    return call
