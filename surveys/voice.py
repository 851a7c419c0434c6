"""The post-call keypad survey: the caller stays on the line when the agent leaves, and answers
with a key.

The voice channel asks through ``conversations.lifecycle`` (it never imports this app): when the
agent leaves a call with the caller still on it, ``call_survey_offer`` decides whether the
survey of the conversation's queue or inbox applies now (the same rules as every channel: the
most specific active survey, the fatigue policy, the sample, no survey of a follow-up), and if so
records it as sent on the voice channel (mode ``keypad``) and returns the question in Japanese
and English. The voice side plays it in the caller's language in a ``<Gather input="dtmf">``;
the keys come back to ``call_survey_key``, which records the answer through ``survey_answer``:
the same response row, timeline event and detractor follow-up as a reply by SMS or a click.

The survey row is the conversation's one survey (a constraint): resolving the conversation later
schedules nothing more, so the caller is never asked twice about one call. A caller who hangs up
before the agent leaves is surveyed as before, after the resolve, on another channel.
"""

import random
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import Channel, Conversation, EventType
from conversations.services.system_events import system_event_record

from .answers import AnswerRefused, survey_answer
from .links import new_token
from .models import (
    SkipReason,
    SurveyFollowUp,
    SurveyPolicy,
    SurveyRequest,
    SurveyStatus,
    scale_of,
)
from .scheduling import definition_for, recently_surveyed, skip_event_record

KEYPAD = "keypad"

# What to press, said after the admin's question (the caller's language: the IVR's two).
_HOW_TO_ANSWER = {
    "ja": "{low}から{high}までの番号でお答えください。",
    "en": "Please press a number from {low} to {high}.",
}
_HOW_TO_ANSWER_TWO_DIGITS = {
    "ja": "{low}から{high}までの番号を押し、最後に#を押してください。",
    "en": "Please enter a number from {low} to {high}, then press the pound key.",
}


def _question(definition, low: int, high: int) -> dict:
    how = _HOW_TO_ANSWER_TWO_DIGITS if high >= 10 else _HOW_TO_ANSWER
    question = {"ja": definition.question_ja or definition.question_en, "en": definition.question_en}
    return {language: f"{question[language]} {how[language].format(low=low, high=high)}".strip()
            for language in ("ja", "en")}


def _skip(conversation: Conversation, definition, reason: str, now: datetime) -> None:
    """The survey does not apply to this call: recorded like a skipped survey of any channel (the
    conversation's one survey row), so the resolve does not ask again by another channel."""
    try:
        with transaction.atomic():
            request = SurveyRequest.objects.create(
                conversation=conversation, customer_id=conversation.customer_id, channel=Channel.VOICE,
                definition=definition, agent_id=conversation.assignee_id, queue_id=conversation.queue_id,
                status=SurveyStatus.SKIPPED, skip_reason=reason, due_at=now, token=new_token(), created_at=now)
            skip_event_record(request)
    except IntegrityError:
        pass  # the conversation has its survey already


def call_survey_offer(*, conversation_id: int, now: datetime | None = None, rng=random) -> dict | None:
    """``lifecycle.call_survey``: the keypad survey to play to the caller now, recorded as sent;
    None when none applies (no survey for its queue or inbox, surveyed recently, not sampled, a
    follow-up, or this conversation had its survey already)."""
    now = now or timezone.now()
    conversation = (Conversation.objects.select_related("customer").filter(pk=conversation_id, channel=Channel.VOICE)
                    .first())
    if conversation is None or SurveyRequest.objects.filter(conversation_id=conversation_id).exists():
        return None
    definition = definition_for(conversation)
    if definition is None:
        return None
    policy = SurveyPolicy.current()
    if SurveyFollowUp.objects.filter(conversation=conversation).exists():
        _skip(conversation, definition, SkipReason.FOLLOW_UP, now)
        return None
    if recently_surveyed(conversation.customer_id, policy=policy, now=now):
        _skip(conversation, definition, SkipReason.RECENTLY_SURVEYED, now)
        return None
    if rng.random() * 100 >= definition.sampling_percent:
        _skip(conversation, definition, SkipReason.NOT_SAMPLED, now)
        return None
    try:
        with transaction.atomic():
            request = SurveyRequest.objects.create(
                conversation=conversation, customer_id=conversation.customer_id, channel=Channel.VOICE,
                definition=definition, agent_id=conversation.assignee_id, queue_id=conversation.queue_id,
                status=SurveyStatus.SENT, due_at=now, token=new_token(), created_at=now, claimed_at=now, sent_at=now,
                sent_channel=Channel.VOICE, sent_mode=KEYPAD, sent_conversation=conversation)
            locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
            system_event_record(locked, EventType.SURVEY_SENT, survey=request.pk, kind=definition.kind,
                                channel=Channel.VOICE, mode=KEYPAD)
    except IntegrityError:
        return None  # two "agent left" signals at once: the first one asks
    low, high = scale_of(definition.kind)
    return {"token": request.token, "kind": definition.kind, "low": low, "high": high,
            "question": _question(definition, low, high)}


def call_survey_key(*, token: str, digits: str) -> str | None:
    """``lifecycle.call_survey_answer``: the caller's keys for the survey ``token``. "recorded"
    (also when Twilio retries the request: the answer stands), "retry" (no score on the scale),
    "closed"; None: not a keypad survey of ours."""
    request = SurveyRequest.objects.filter(token=token, sent_mode=KEYPAD).only("pk", "status").first() if token else None
    if request is None:
        return None
    if request.status == SurveyStatus.ANSWERED:
        return "recorded"
    keys = (digits or "").strip().rstrip("#")
    if not keys.isdigit() or len(keys) > 2:
        return "retry"
    try:
        survey_answer(request_id=request.pk, score=int(keys), via=KEYPAD)
    except AnswerRefused as refused:
        return "retry" if refused.code == "score" else ("recorded" if refused.code == "answered" else "closed")
    return "recorded"
