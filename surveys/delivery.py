"""Sending a due survey on the customer's own channel, through the one outbound path.

SMS and WhatsApp carry the question with its scale ("Reply 1–5"), or a link when the inbox is in
link mode (``inbox.settings["survey_mode"] = "link"``: where two-way SMS is not available, Japan
included); WhatsApp outside its 24 hours uses the inbox's approved survey template
(``settings["whatsapp_templates"]`` entry with ``"purpose": "survey"``) or is skipped with the
reason. Email carries one link per score. Web chat shows a rating card in the widget. Voice,
until the voice channel has its keypad survey, gets the SMS survey (else the email one).

Every message goes through ``conversations.services.outbound.message_send``: consent, opt-out and
the channel's own limits are checked there, and delivery and its states are the outbound path's.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from conversations.channels.registry import channel_survey_card
from conversations.models import (
    Channel,
    Conversation,
    ConversationStatus,
    EventType,
    Inbox,
)
from conversations.sequence import message_seq_next
from conversations.services.outbound import (
    SendRefused,
    message_send,
    whatsapp_window_open,
)
from conversations.services.system_events import system_event
from profiles.models import IdentityKind

from .cards import customer_language, survey_card
from .links import link_url
from .models import SkipReason, SurveyPolicy, SurveyRequest, SurveyStatus
from .scheduling import another_conversation_open, out_of_quiet_hours, survey_skip
from .timeline_texts import stored_text

logger = logging.getLogger(__name__)

_REFUSAL_REASON = {"opted_out": SkipReason.OPTED_OUT, "whatsapp_window": SkipReason.WHATSAPP_WINDOW,
                   "no_address": SkipReason.NO_ADDRESS, "template_not_approved": SkipReason.WHATSAPP_WINDOW}


def _reply_text(request: SurveyRequest) -> str:
    card = survey_card(request)
    with translation.override(customer_language(request.customer)):
        return f"{card['question']} " + _("Reply with a number from %(min)s (%(min_label)s) to %(max)s (%(max_label)s).") % card


def _link_text(request: SurveyRequest) -> str:
    card = survey_card(request)
    with translation.override(customer_language(request.customer)):
        return f"{card['question']} " + _("Answer here: %(url)s") % {"url": link_url(request)}


def _email_text(request: SurveyRequest) -> str:
    card = survey_card(request)
    with translation.override(customer_language(request.customer)):
        lines = [card["question"], "", _("Choose your answer (one click, then confirm):")]
        for score in range(card["max"], card["min"] - 1, -1):
            label = f" ({card['max_label']})" if score == card["max"] else f" ({card['min_label']})" if score == card["min"] else ""
            lines.append(f"{score}{label}: {link_url(request, score=score)}")
        return "\n".join(lines)


def _survey_template(inbox: Inbox) -> dict | None:
    for template in (inbox.settings or {}).get("whatsapp_templates", []) or []:
        if isinstance(template, dict) and template.get("purpose") == "survey" and template.get("content_sid"):
            return template
    return None


def _voice_fallback(conversation: Conversation) -> Conversation | None:
    """A voice contact's survey goes by SMS (a phone we know and an SMS inbox), else by email: on
    the customer's conversation of that channel, opened resolved for the purpose when there is none
    (it is not a contact to route)."""
    customer = conversation.customer
    kinds = {i.kind for i in customer.identities.all()}
    for channel, identity in ((Channel.SMS, IdentityKind.PHONE), (Channel.EMAIL, IdentityKind.EMAIL)):
        if identity not in kinds:
            continue
        inbox = Inbox.objects.filter(kind=channel, is_active=True).order_by("id").first()
        if inbox is None:
            continue
        now = timezone.now()
        return Conversation.objects.create(
            customer=customer, inbox=inbox, channel=channel, status=ConversationStatus.RESOLVED, resolved_at=now,
            created_at=now, last_message_at=now, queue=conversation.queue,
            routing_note=f"survey about voice contact #{conversation.pk}"[:300])
    return None


def _send(request: SurveyRequest, conversation: Conversation) -> str:
    """Hand the survey to the channel; returns how it went (reply, link, email, card, template).
    Raises ``SendRefused`` with the outbound path's reason."""
    if conversation.channel == Channel.WEBCHAT:
        if channel_survey_card(conversation, survey_card(request)):
            return "card"
        raise SendRefused("no widget", code="no_address")
    if conversation.channel == Channel.EMAIL:
        message_send(conversation=conversation, agent=None, text=_email_text(request), reopen=False)
        return "email"
    if conversation.channel in (Channel.SMS, Channel.WHATSAPP):
        link_mode = (conversation.inbox.settings or {}).get("survey_mode") == "link"
        text = _link_text(request) if link_mode else _reply_text(request)
        if conversation.channel == Channel.WHATSAPP and not whatsapp_window_open(conversation):
            template = _survey_template(conversation.inbox)
            if template is None:
                raise SendRefused("whatsapp window", code="whatsapp_window")
            message_send(conversation=conversation, agent=None, text=text, reopen=False,
                         template={"content_sid": template["content_sid"],
                                   "variables": {"1": survey_card(request)["question"], "2": link_url(request)}})
            return "template"
        message_send(conversation=conversation, agent=None, text=text, reopen=False)
        return "link" if link_mode else "reply"
    raise SendRefused("no channel", code="no_address")


def survey_send(*, request_id: int, now: datetime | None = None) -> str:
    """Send one claimed, due survey exactly once; returns its status afterwards.

    The request's row is locked for the whole decision and send (the outbound path only stores the
    message and queues its delivery after commit: no network call inside), so two executions of the
    task (a redelivered message, two workers) send once: the second finds it no longer scheduled.
    A cancel that came after the claim wins the same way."""
    now = now or timezone.now()
    with transaction.atomic():
        request = (SurveyRequest.objects.select_for_update(of=("self",))
                   .select_related("definition", "customer", "conversation__inbox", "conversation__customer")
                   .filter(pk=request_id).first())
        if request is None or request.status != SurveyStatus.SCHEDULED:
            return request.status if request else ""
        policy = SurveyPolicy.current()
        morning = out_of_quiet_hours(now, customer=request.customer, policy=policy)
        if morning > now:
            # Late tick or a policy change: the send waits for the customer's morning.
            request.due_at, request.claimed_at = morning, None
            request.save(update_fields=["due_at", "claimed_at"])
            return request.status
        if _surveyed_since(request, policy=policy, now=now):
            survey_skip(request, SkipReason.RECENTLY_SURVEYED)
            return request.status
        if another_conversation_open(request):
            survey_skip(request, SkipReason.ANOTHER_OPEN)
            return request.status
        conversation = request.conversation
        if conversation.channel == Channel.VOICE:
            conversation = _voice_fallback(conversation)
            if conversation is None:
                survey_skip(request, SkipReason.NO_ADDRESS, "voice contact without a phone or email to survey")
                return request.status
        try:
            with transaction.atomic():
                mode = _send(request, conversation)
        except SendRefused as exc:
            survey_skip(request, _REFUSAL_REASON.get(exc.code, SkipReason.SEND_REFUSED), " ".join(exc.messages))
            return request.status
        request.status, request.sent_at = SurveyStatus.SENT, now
        request.sent_channel, request.sent_mode, request.sent_conversation = conversation.channel, mode, conversation
        request.save(update_fields=["status", "sent_at", "sent_channel", "sent_mode", "sent_conversation"])
        locked = Conversation.objects.select_for_update().get(pk=request.conversation_id)
        event = system_event(locked, EventType.SURVEY_SENT, survey=request.pk, kind=request.definition.kind,
                             channel=conversation.channel, mode=mode)
        event.text = stored_text(EventType.SURVEY_SENT, event.event_data)
        event.seq = message_seq_next(locked)
        event.save(force_insert=True)
    return request.status


def _surveyed_since(request: SurveyRequest, *, policy: SurveyPolicy, now: datetime) -> bool:
    """Another survey of this customer went out within the policy's days (a scheduled one that has
    not gone yet does not hold this one back at send time: the first due is sent)."""
    return SurveyRequest.objects.filter(
        customer_id=request.customer_id, sent_at__gte=now - timedelta(days=policy.days_between),
        status__in=[SurveyStatus.SENT, SurveyStatus.ANSWERED, SurveyStatus.EXPIRED],
    ).exclude(pk=request.pk).exists()
