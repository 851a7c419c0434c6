"""Each step of an inbound call: Twilio's parameters in, the TwiML to play out. The writes are
``calls``' services; this module decides what the caller hears from the call's stored state, so a
retried request (same CallSid, same step) answers the same TwiML and changes nothing.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.utils import timezone

from ...models import Call, CallOutcome, Queue
from ...routing.hours import BusinessHours
from ...routing.position import queue_position
from . import calls, twiml
from .ivr import IvrConfig, ivr_config, match_option, wants_english

WAIT_CHOICES = {"1": "keep", "2": "callback", "3": "voicemail"}


def _config(call: Call) -> IvrConfig:
    return ivr_config(call.conversation.inbox.settings)


def _hours(call: Call, config: IvrConfig) -> BusinessHours:
    """The line's own hours when its IVR has them, else those of the queue it names
    (``hours_queue``), else the inbox's queue. A broken config counts as always open: a caller is
    never turned away by a typo (the admin's check names it)."""
    try:
        if config.business_hours is not None:
            return BusinessHours.from_config(config.business_hours)
        inbox = call.conversation.inbox
        queue = (Queue.objects.filter(slug=config.hours_queue).first() if config.hours_queue
                 else Queue.objects.filter(pk=inbox.default_queue_id).first())
        return BusinessHours.from_config(queue.business_hours if queue is not None else None)
    except ValidationError:
        return BusinessHours()


def _waiting_hours(call: Call, config: IvrConfig) -> BusinessHours:
    """The hours of the queue the caller waits in (the line's own hours first, as for the menu)."""
    queue = call.conversation.queue if call.conversation.queue_id else None
    if config.business_hours is None and queue is not None:
        try:
            return BusinessHours.from_config(queue.business_hours or None)
        except ValidationError:
            return BusinessHours()  # a broken config never turns a caller away (the admin names it)
    return _hours(call, config)


def opening_text(opens: datetime | None, zone: ZoneInfo | None, language: str) -> str:
    """When the line opens, as a caller says it: 「12月7日 月曜日 9時00分」 / "Monday, December 7 at 9:00"."""
    if opens is None:
        return ""
    local = opens.astimezone(zone) if zone else opens
    if language == "ja":
        weekday = "月火水木金土日"[local.weekday()]
        return f"{local.month}月{local.day}日 {weekday}曜日 {local.hour}時{local.minute:02d}分"
    return local.strftime("%A, %B ") + f"{local.day} at {local.hour}:{local.minute:02d}"


# --- incoming ---------------------------------------------------------------------------------------

def incoming(post) -> str:
    """A new call (or Twilio's retry of it): the caller, the conversation, then business hours
    before the menu: closed → when it opens, and voicemail; open → greeting and menu (a line
    without options goes straight into its queue)."""
    call, _created = calls.call_start(
        call_sid=post.get("CallSid", ""), from_=post.get("From", ""), to=post.get("To", ""),
        status=post.get("CallStatus", ""), caller_name=post.get("CallerName", ""),
    )
    return _after_start(call)


def _after_start(call: Call) -> str:
    config = _config(call)
    if call.outcome == CallOutcome.VOICEMAIL:
        if call.ivr.get("voicemail") == "closed":  # a retried first request: the same announcement
            return _closed_twiml(call, config, _hours(call, config))
        return twiml.twiml_voicemail(config, language=call.language)
    if call.queued_at is not None:
        return _enqueue_twiml(call, config)
    hours = _hours(call, config)
    if not hours.is_open(timezone.now()):
        calls.call_voicemail_start(call=call, reason="closed")
        return _closed_twiml(call, config, hours)
    if not config.options:
        call = calls.call_enqueue(call=call, config=config, option=None, how="no_menu")
        return _enqueue_twiml(call, config)
    return twiml.twiml_menu(config, language=call.language, attempt=0)


def _closed_twiml(call: Call, config: IvrConfig, hours: BusinessHours) -> str:
    opens = hours.next_open(timezone.now())
    return twiml.twiml_closed(config, language=call.language, call=call,
                              opens=opening_text(opens, hours.time_zone, call.language))


def _enqueue_twiml(call: Call, config: IvrConfig) -> str:
    call.conversation.refresh_from_db(fields=["queue"])
    queue = call.conversation.queue
    return twiml.twiml_enqueue(config, language=call.language, queue_name=queue.slug if queue else "voice")


# --- the menu ---------------------------------------------------------------------------------------

def gather(call: Call, post, *, attempt: int) -> str:
    """The caller's answer to menu ``attempt`` (keys or words). 9 (or "English") switches the
    language and plays the menu again; an option queues the call; nothing (or something we do
    not understand) repeats the menu up to ``retries`` times, then takes the default option."""
    config = _config(call)
    if call.queued_at is not None or call.outcome:
        return _after_start(call)  # a retried or late answer: where the call is now
    digits, speech = post.get("Digits", "") or "", post.get("SpeechResult", "") or ""
    if wants_english(config, digits=digits, speech=speech):
        call = calls.call_language_set(call=call, language="en")
        return twiml.twiml_menu(config, language="en", attempt=0)
    option = match_option(config, digits=digits, speech=speech, language=call.language)
    if option is not None:
        call = calls.call_enqueue(call=call, config=config, option=option, digits=digits, speech=speech,
                                  how="keypad" if digits else "speech")
        return _enqueue_twiml(call, config)
    if attempt < config.retries:
        calls.call_no_input(call=call, attempt=attempt + 1)
        return twiml.twiml_menu(config, language=call.language, attempt=attempt + 1)
    default = config.option(config.default_option)
    call = calls.call_enqueue(call=call, config=config, option=default, how="default")
    return _enqueue_twiml(call, config)


# --- on hold ----------------------------------------------------------------------------------------

def wait(call: Call, post) -> str:
    """Twilio's waitUrl, asked each time the hold loop comes round. A caller waiting longer than
    the line's limit is offered voicemail (leaves the queue); one whose callback is arranged
    leaves too (a retried keypress)."""
    config = _config(call)
    if call.callback_requested or call.outcome == CallOutcome.VOICEMAIL:
        return twiml.twiml_wait_choice(config, language=call.language,
                                       choice="callback" if call.callback_requested else "voicemail")
    hours = _waiting_hours(call, config)
    now = timezone.now()
    callback = not calls.is_withheld(call.from_address)
    if not hours.is_open(now):
        # The queue closed while they waited: nobody will answer today. Said, and a way out offered
        # (a callback keeps their place for when it opens; silence leads to voicemail).
        calls.call_way_out_offered(call=call, reason="closed_while_waiting")
        opens = opening_text(hours.next_open(now), hours.time_zone, call.language)
        return twiml.twiml_way_out(config, language=call.language, reason="closed", opens=opens, callback=callback)
    limit = call.ivr.get("wait_limit") or calls.DEFAULT_WAIT_LIMIT
    if call.queued_at is not None and (now - call.queued_at).total_seconds() > limit:
        # Nobody took the call within the limit: the same way out (routing still offers the call
        # while they choose; an agent who takes it puts them through).
        calls.call_way_out_offered(call=call, reason="no_agent")
        return twiml.twiml_way_out(config, language=call.language, reason="no_agent", callback=callback)
    position = queue_position(conversation=call.conversation)
    return twiml.twiml_wait(config, language=call.language, position=position)


def wait_choice(call: Call, post) -> str:
    config = _config(call)
    choice = WAIT_CHOICES.get((post.get("Digits", "") or "")[:1], "keep")
    if choice == "callback" and not calls.call_callback_request(call=call):
        choice = "callback_unavailable"
    elif choice == "voicemail":
        calls.call_voicemail_start(call=call, reason="caller")
    return twiml.twiml_wait_choice(config, language=call.language, choice=choice)


def enqueue_action(call: Call, post) -> str:
    """The caller left the queue (Enqueue's action): hung up → abandoned; left for a callback →
    goodbye; left (or the queue failed) for voicemail → the recording."""
    config = _config(call)
    result = post.get("QueueResult", "")
    call.refresh_from_db()
    if result == "hangup":
        calls.call_hung_up_in_queue(call=call)
        return twiml.twiml_empty()
    if result in ("bridged", "redirected"):
        return twiml.twiml_hangup() if result == "bridged" else twiml.twiml_empty()
    if call.callback_requested:
        return twiml.twiml_callback_confirmed(config, language=call.language)
    if call.outcome != CallOutcome.VOICEMAIL:
        reason = call.ivr.get("way_out") or result or "left"
        calls.call_voicemail_start(call=call, reason=reason)
    return twiml.twiml_voicemail(config, language=call.language)


# --- put through ---------------------------------------------------------------------------------

def conference_join(call: Call, post) -> str:
    """Our redirect of the waiting caller (or our callback to them, answered) after an agent took
    the call: into the conversation's conference, where the agent is being added."""
    return twiml.twiml_conference(_config(call), call=call, conversation_id=call.conversation_id)


def requeue(call: Call, post) -> str:
    """Our redirect of a caller whose agent did not answer: back on hold, same place in line."""
    config = _config(call)
    if call.outcome == CallOutcome.VOICEMAIL:
        return twiml.twiml_voicemail(config, language=call.language)
    call.conversation.refresh_from_db(fields=["queue"])
    queue = call.conversation.queue
    return twiml.twiml_requeued(config, language=call.language, queue_name=queue.slug if queue else "voice")


SURVEY_ATTEMPTS = 2


def survey(call: Call, post, *, attempt: int) -> str:
    """The post-call keypad survey: its question (attempt 0), then the caller's keys, recorded by
    the surveys app (``lifecycle.call_survey_answer``). A key off the scale, or none, asks again
    once; then goodbye. A retried request with the same keys answers the same."""
    from ... import lifecycle

    config = _config(call)
    asked = call.ivr.get("survey") or {}
    if not asked.get("token"):
        return twiml.twiml_goodbye(config, language=call.language)
    question = asked.get("question", {}).get(call.language) or asked.get("question", {}).get("ja", "")
    if attempt == 0:
        return twiml.twiml_survey(config, call_id=call.pk, language=call.language, question=question, attempt=1,
                                  two_digits=asked.get("high", 5) >= 10)
    result = lifecycle.call_survey_answer(token=asked["token"], digits=post.get("Digits", "") or "")
    if result == "retry" and attempt < SURVEY_ATTEMPTS:
        return twiml.twiml_survey(config, call_id=call.pk, language=call.language, question=question, attempt=attempt + 1,
                                  two_digits=asked.get("high", 5) >= 10)
    return twiml.twiml_goodbye(config, language=call.language, name="survey_thanks" if result == "recorded" else "goodbye")


def voicemail_done(call: Call, post) -> str:
    return twiml.twiml_goodbye(_config(call), language=call.language, name="voicemail_thanks")
