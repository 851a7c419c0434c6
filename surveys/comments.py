"""The "why?" question after a score given by text reply (SMS, WhatsApp), and the reply to it.

A customer who answers "2" by SMS is asked the survey's "why?" question, in their language, when
the definition has one and their answer carried no remark of its own ("2 too slow" already says
why). Their next message to that number within the policy's comment window is the survey's
comment (unless it asks a question: that is an ordinary message, routed to someone): kept on the timeline in the surveyed conversation, which stays resolved (no new work is
routed for it), on the answer and its ``survey_answered`` event (the customer 360), and as a note
in the follow-up an unhappy answer opened, for its owner. A later message, or one after the
comment, is an ordinary message. The link page and the widget's card take the comment with the
score already.

The question is sent by a task queued when the answer commits, not inside the ingest: the
customer's reply is stored first (so WhatsApp's 24 hours are open again after a template survey,
and the question follows the answer on the timeline). That it is owed is written with the answer
(``comment_asked_at``); it is sent under the request's row lock and ``comment_ask_message`` says it
was: a Twilio retry of the answer is a duplicate the ingest ignores, a redelivered task sends
nothing twice, and one that was lost is queued again by the tick.
"""

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from contactcenter.enqueue import enqueue_on_commit
from conversations.events import notify_message_created
from conversations.models import (
    Conversation,
    Direction,
    EventType,
    Message,
    MessageKind,
)
from conversations.sequence import message_seq_next
from conversations.services.outbound import SendRefused, message_send

from .cards import customer_language
from .models import (
    SurveyFollowUp,
    SurveyPolicy,
    SurveyRequest,
    SurveyResponse,
    SurveyStatus,
)
from .task_names import ASK_WHY
from .timeline_texts import stored_text

_QUESTION = re.compile(r"[?？]")

# A "why?" owed this long and still not asked: its task was lost; the tick queues it again.
LOST_ASK = timedelta(minutes=2)


def why_question(request: SurveyRequest) -> str:
    return request.definition.follow_up_in(customer_language(request.customer))


def why_owe(request: SurveyRequest, response: SurveyResponse, *, at: datetime) -> bool:
    """After a text-reply answer (in its transaction, the request locked): record that the "why?"
    is owed and queue its sending for the commit. Nothing when the survey has no "why?" in the
    customer's language or the answer already said why."""
    if response.via != "reply" or response.comment or not why_question(request):
        return False
    SurveyRequest.objects.filter(pk=request.pk, comment_asked_at__isnull=True).update(comment_asked_at=at)
    enqueue_on_commit(ASK_WHY, request.pk)
    return True


def survey_ask_why(*, request_id: int, now: datetime | None = None) -> bool:
    """Send the owed "why?" question once; True if this call sent it. Too late (past the comment
    window), already answered with a comment, or refused by the channel (the customer opted out
    since): it is not owed any more."""
    now = now or timezone.now()
    with transaction.atomic():
        request = (SurveyRequest.objects.select_for_update(of=("self",))
                   .select_related("definition", "customer", "conversation", "sent_conversation")
                   .filter(pk=request_id).first())
        if request is None or request.comment_asked_at is None or request.comment_ask_message_id is not None:
            return False
        policy = SurveyPolicy.current()
        response = SurveyResponse.objects.filter(request=request).first()
        text = why_question(request)
        late = now - request.comment_asked_at > timedelta(minutes=policy.comment_window_minutes)
        if request.status != SurveyStatus.ANSWERED or response is None or response.comment or not text or late:
            _not_owed(request)
            return False
        try:
            with transaction.atomic():
                message = message_send(conversation=request.sent_conversation or request.conversation, agent=None,
                                       text=text, reopen=False)
        except SendRefused:
            _not_owed(request)
            return False
        request.comment_ask_message = message
        request.save(update_fields=["comment_ask_message"])
    return True


def _not_owed(request: SurveyRequest) -> None:
    request.comment_asked_at = None
    request.save(update_fields=["comment_asked_at"])


def surveys_why_lost(*, now: datetime | None = None, limit: int = 200) -> int:
    """The tick's part: "why?" questions owed for a while and never sent (their task was lost) are
    queued again; the send itself decides whether it is still worth asking."""
    now = now or timezone.now()
    ids = list(SurveyRequest.objects.filter(comment_asked_at__isnull=False, comment_ask_message__isnull=True,
                                            comment_asked_at__lt=now - LOST_ASK)
               .order_by("comment_asked_at").values_list("pk", flat=True)[:limit])
    for request_id in ids:
        enqueue_on_commit(ASK_WHY, request_id)
    return len(ids)


def inbound_comment_claim(request: SurveyRequest, *, inbox, text: str, at: datetime) -> int | None:
    """Part of the surveys' inbound claim (in the ingest's transaction), for the customer's survey
    that asked "why?" (``comment_ask_message`` selected): their first message to the number that
    asked, within the comment window, is the survey's comment. Returns the conversation the message
    joins (the one the question was asked in), or None: an ordinary message."""
    asked = request.comment_ask_message
    window = timedelta(minutes=SurveyPolicy.current().comment_window_minutes)
    if asked is None or asked.inbox_id != inbox.pk or not asked.created_at <= at <= asked.created_at + window:
        return None
    if not (text or "").strip() or _QUESTION.search(text):
        # A question wants an answer, not a place in a survey: an ordinary message, routed to
        # someone (as a score with a question in it is, surveys.answers). Never swallowed.
        return None
    if Message.objects.filter(customer_id=request.customer_id, inbox_id=inbox.pk, direction=Direction.INBOUND,
                              created_at__gt=asked.created_at).exists():
        return None  # only the first reply: after a question, the conversation it opened goes on
    locked = SurveyRequest.objects.select_for_update(of=("self",)).get(pk=request.pk)
    response = SurveyResponse.objects.filter(request=locked).first()
    if locked.status != SurveyStatus.ANSWERED or response is None or response.comment:
        return None  # a comment came first (the link page): this one is an ordinary message
    survey_comment_record(locked, response, text=text, at=at)
    return asked.conversation_id


def survey_comment_record(request: SurveyRequest, response: SurveyResponse, *, text: str, at: datetime) -> None:
    """Keep ``text`` as the answer's comment: on the answer, its ``survey_answered`` event (what
    the customer 360 shows), and as a note in its follow-up, if an unhappy answer opened one.
    Caller holds the request's row lock."""
    response.comment = text.strip()[:2000]
    response.save(update_fields=["comment"])
    event = (Message.objects.filter(conversation_id=request.conversation_id, event_type=EventType.SURVEY_ANSWERED,
                                    event_data__survey=request.pk).order_by("-id").first())
    if event is not None:
        event.event_data = {**(event.event_data or {}), "comment": response.comment}
        event.text = stored_text(EventType.SURVEY_ANSWERED, event.event_data)
        event.save(update_fields=["event_data", "text"])
    follow_up = SurveyFollowUp.objects.filter(response=response).values_list("conversation_id", flat=True).first()
    if follow_up is None:
        return
    conversation = Conversation.objects.select_for_update().get(pk=follow_up)
    # Agent-facing words stored in the site's language, whichever process wrote them.
    with override(settings.LANGUAGE_CODE):
        note = _("The customer's answer to the survey's \"why?\" question: %(comment)s") % {
            "comment": response.comment}
    message = Message.objects.create(
        seq=message_seq_next(conversation), conversation=conversation, customer_id=conversation.customer_id,
        inbox_id=conversation.inbox_id, channel=conversation.channel, direction=Direction.INTERNAL,
        kind=MessageKind.NOTE, text=note, created_at=at,
        metadata={"survey_follow_up": {"about": request.conversation_id, "comment": True}})
    notify_message_created(message, assignee_id=conversation.assignee_id)
