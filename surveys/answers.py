"""Taking survey answers: replies by text, the link page, the widget's card; and the closed loop
(a detractor's answer opens a follow-up someone owns).

Text replies are read tolerantly ("4", "４", "4です", "5 thanks", "10!") and only when the whole
reply is a score and a short remark: a question, an order number or anything else is not an answer
and is never swallowed (the ingest stores it as any message, the survey stays unanswered). Only
the first answer within the answer window counts; the link page may change it afterwards, and says
so.
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import override

from contactcenter.enqueue import enqueue_on_commit
from conversations.models import (
    Channel,
    Conversation,
    ConversationStatus,
    Direction,
    EventType,
    Message,
    MessageKind,
)
from conversations.routing.placement import queue_enter
from conversations.sequence import message_seq_next
from conversations.services.system_events import system_event, system_event_record
from conversations.task_names import ROUTE_CONVERSATION
from profiles.models import Customer

from .cards import customer_language
from .comments import inbound_comment_claim, why_owe
from .models import (
    SurveyFollowUp,
    SurveyPolicy,
    SurveyRequest,
    SurveyResponse,
    SurveyStatus,
    scale_of,
)
from .timeline_texts import stored_text

# A score first, then at most a short remark without digits or a question mark: "5 thanks",
# "4です", "10!". "3 items missing from order 1234?" is a message, not an answer.
_ANSWER = re.compile(r"^\s*(\d{1,2})(?!\d)\s*(?:/\s*\d{1,2}\s*)?(?:点|てん)?\s*([^\d?？]{0,40})$", re.DOTALL)
# Politeness around a score, not a comment worth keeping.
_NOT_A_COMMENT = re.compile(r"^[\s!！.。,、~〜ー\-]*(です|でした|ですね|です。|点|thanks?|thank you|ty)?[\s!！.。,、~〜ー\-]*$",
                            re.IGNORECASE)


class AnswerRefused(Exception):
    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class ParsedAnswer:
    score: int
    comment: str


def answer_parse(text: str, *, kind: str) -> ParsedAnswer | None:
    """The score (and remark) a reply carries for a survey of ``kind``, or None if it is not an
    answer. Full-width digits and punctuation are read as their ASCII forms (NFKC)."""
    normalized = unicodedata.normalize("NFKC", text or "").strip()
    if not normalized or len(normalized) > 60:
        return None
    match = _ANSWER.match(normalized)
    if match is None:
        return None
    score = int(match.group(1))
    low, high = scale_of(kind)
    if not low <= score <= high:
        return None
    remark = match.group(2).strip()
    return ParsedAnswer(score=score, comment="" if _NOT_A_COMMENT.match(remark) else remark)


def answer_window_open(request: SurveyRequest, *, now: datetime, policy: SurveyPolicy | None = None) -> bool:
    policy = policy or SurveyPolicy.current()
    return request.sent_at is not None and now - request.sent_at <= timedelta(hours=policy.answer_window_hours)


def is_detractor(kind: str, score: int, *, policy: SurveyPolicy) -> bool:
    return score <= policy.detractor_max(kind)


def _answer_event(request: SurveyRequest, response: SurveyResponse, *, changed_from: int | None = None) -> None:
    """The ``survey_answered`` event on the customer's timeline, in the conversation it was about
    (the console's customer 360 lists these; ``timeline_texts`` words it in the viewer's language)."""
    conversation = Conversation.objects.select_for_update().get(pk=request.conversation_id)
    event = system_event(conversation, EventType.SURVEY_ANSWERED, survey=request.pk, kind=response.kind,
                         score=response.score, comment=response.comment, about=request.conversation_id,
                         channel=response.channel, via=response.via,
                         **({"changed_from": changed_from} if changed_from is not None else {}))
    event.text = stored_text(EventType.SURVEY_ANSWERED, event.event_data)
    event.seq = message_seq_next(conversation)
    event.save(force_insert=True)


def _follow_up_open(request: SurveyRequest, response: SurveyResponse, *, policy: SurveyPolicy, now: datetime) -> None:
    """An unhappy answer becomes a conversation in the follow-up queue, high priority, with the
    score, the comment and a link to the contact; routed like any other. Not surveyed itself.
    Without a follow-up queue in the policy it goes to the queue that handled the contact (else its
    inbox's default queue): every unhappy answer has an owner."""
    if SurveyFollowUp.objects.filter(response=response).exists():
        return
    about = request.conversation
    queue = policy.follow_up_queue or about.queue or about.inbox.default_queue
    if queue is None:
        return
    with override(settings.LANGUAGE_CODE):  # agent-facing words in the site's language, whoever answered
        subject = _("Survey follow-up: %(kind)s %(score)s") % {"kind": response.kind.upper(), "score": response.score}
        high = scale_of(response.kind)[1]
        text = _("Unhappy survey answer: %(kind)s %(score)s of %(high)s. Comment: %(comment)s. About the contact "
                 "%(link)s.") % {"kind": response.kind.upper(), "score": response.score, "high": high,
                                 "comment": response.comment or "—",
                                 "link": reverse("console:conversation", kwargs={"conversation_id": about.pk})}
    conversation = Conversation(
        customer_id=request.customer_id, inbox_id=about.inbox_id, channel=about.channel,
        status=ConversationStatus.OPEN, priority=policy.follow_up_priority, created_at=now, last_message_at=now,
        waiting_since=now, subject=subject[:300],
    )
    queue_enter(conversation, queue, at=now, reason="survey follow-up")
    conversation.priority = max(conversation.priority, policy.follow_up_priority)
    conversation.save(force_insert=True)
    SurveyFollowUp.objects.create(response=response, conversation=conversation, created_at=now)
    system_event_record(conversation, EventType.CREATED, via="survey_follow_up", about=about.pk)
    Message.objects.create(
        seq=message_seq_next(conversation), conversation=conversation, customer_id=conversation.customer_id,
        inbox_id=conversation.inbox_id, channel=conversation.channel, direction=Direction.INTERNAL,
        kind=MessageKind.NOTE, text=text, created_at=now,
        metadata={"survey_follow_up": {"about": about.pk, "score": response.score, "kind": response.kind}})
    enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)


def survey_answer(*, request_id: int, score: int, comment: str = "", via: str, now: datetime | None = None,
                  allow_change: bool = False) -> tuple[SurveyResponse, int | None]:
    """Record an answer. The first answer within the window counts; with ``allow_change`` (the link
    page) a later one replaces it and the previous score is returned (else None). Raises
    ``AnswerRefused`` (expired, out of range, already answered, never sent)."""
    now = now or timezone.now()
    comment = (comment or "").strip()[:2000]
    with transaction.atomic():
        request = (SurveyRequest.objects.select_for_update(of=("self",))
                   .select_related("definition", "conversation").get(pk=request_id))
        policy = SurveyPolicy.current()
        low, high = scale_of(request.definition.kind)
        if not isinstance(score, int) or isinstance(score, bool) or not low <= score <= high:
            raise AnswerRefused(_("Choose a score from %(low)s to %(high)s.") % {"low": low, "high": high}, "score")
        if request.status not in (SurveyStatus.SENT, SurveyStatus.ANSWERED):
            raise AnswerRefused(_("This survey is closed."), "closed")
        if answer_window_open(request, now=now, policy=policy):
            return _answer_record(request, score=score, comment=comment, via=via, now=now, policy=policy,
                                  allow_change=allow_change)
    # Past the window: closed for good (outside the block, which the refusal would roll back).
    SurveyRequest.objects.filter(pk=request_id, status=SurveyStatus.SENT).update(status=SurveyStatus.EXPIRED)
    raise AnswerRefused(_("This survey is closed."), "closed")


def _answer_record(request: SurveyRequest, *, score: int, comment: str, via: str, now: datetime,
                   policy: SurveyPolicy, allow_change: bool) -> tuple[SurveyResponse, int | None]:
    """Caller holds the request's row lock, inside the answer window."""
    existing = SurveyResponse.objects.filter(request=request).first()
    if existing is not None:
        if not allow_change:
            raise AnswerRefused(_("This survey was already answered."), "answered")
        previous = existing.score
        existing.previous_score, existing.score, existing.changed_at = previous, score, now
        existing.comment = comment or existing.comment
        existing.save(update_fields=["previous_score", "score", "changed_at", "comment"])
        _answer_event(request, existing, changed_from=previous)
        if is_detractor(existing.kind, score, policy=policy):
            _follow_up_open(request, existing, policy=policy, now=now)
        return existing, previous
    response = SurveyResponse.objects.create(
        request=request, kind=request.definition.kind, score=score, comment=comment, via=via,
        channel=request.sent_channel or request.channel, conversation_id=request.conversation_id,
        customer_id=request.customer_id, agent_id=request.agent_id, queue_id=request.queue_id, answered_at=now)
    request.status = SurveyStatus.ANSWERED
    request.save(update_fields=["status"])
    _answer_event(request, response)
    if is_detractor(response.kind, score, policy=policy):
        _follow_up_open(request, response, policy=policy, now=now)
    return response, None


def inbound_answer_claim(*, customer, inbox, text: str, at: datetime) -> int | None:
    """``conversations.lifecycle``'s claim: a text reply that answers the customer's open survey
    on this channel is recorded and joins the conversation the survey went to (left resolved), and
    the survey's "why?" is asked (``comments``); the reply to that "why?" is the answer's comment.
    Anything else is not claimed and takes the ordinary path. Runs in the ingest's transaction."""
    if inbox.kind not in (Channel.SMS, Channel.WHATSAPP):
        return None
    # One read for every message of a customer (most have no survey out): their latest survey on
    # this channel still taking an answer, or answered and waiting for the reply to its "why?".
    request = (SurveyRequest.objects.filter(customer_id=customer.pk, sent_channel=inbox.kind)
               .filter(Q(status=SurveyStatus.SENT, sent_mode__in=["reply", "template"])
                       | Q(status=SurveyStatus.ANSWERED, comment_ask_message__isnull=False, response__comment=""))
               .select_related("definition", "comment_ask_message").order_by("-sent_at", "-id").first())
    if request is not None and request.status == SurveyStatus.ANSWERED:
        return inbound_comment_claim(request, inbox=inbox, text=text, at=at)
    if request is None or not answer_window_open(request, now=at):
        return None
    sent_in = request.sent_conversation_id or request.conversation_id
    if not Conversation.objects.filter(pk=sent_in, inbox=inbox).exists():
        return None  # an answer comes back to the number the survey came from
    parsed = answer_parse(text, kind=request.definition.kind)
    if parsed is None:
        return None
    try:
        response, _previous = survey_answer(request_id=request.pk, score=parsed.score, comment=parsed.comment,
                                            via="reply", now=at)
    except AnswerRefused:
        return None
    why_owe(request, response, at=at)
    return sent_in


def widget_answer(*, customer_id: int | None, payload: dict) -> dict | None:
    """``conversations.lifecycle``'s widget hook: the rating card's answer, checked against the
    visitor's customer (a token of someone else's survey is refused like an unknown one). The reply
    is in the customer's language, as the card was (``cards.survey_card``)."""
    token, score = payload.get("token"), payload.get("score")
    comment = payload.get("comment") if isinstance(payload.get("comment"), str) else ""
    request = None
    if isinstance(token, str) and 0 < len(token) <= 64 and customer_id is not None:
        request = (SurveyRequest.objects.filter(token=token, customer_id=customer_id, sent_mode="card")
                   .select_related("customer").first())
    customer = request.customer if request is not None else \
        Customer.objects.filter(pk=customer_id).only("language").first() if customer_id is not None else None
    with translation.override(customer_language(customer) if customer is not None else None):
        if request is None:
            return {"token": token if isinstance(token, str) else "", "ok": False,
                    "message": _("This survey is closed.")}
        try:
            response, _previous = survey_answer(request_id=request.pk, score=score, comment=comment, via="widget")
        except AnswerRefused as exc:
            return {"token": token, "ok": False, "message": exc.message}
        return {"token": token, "ok": True, "score": response.score, "message": _("Thank you for your answer.")}
