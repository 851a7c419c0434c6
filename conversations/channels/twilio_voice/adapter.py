"""Twilio voice: verify a webhook, tell the call an agent took it (the channel registry's hook).

Signatures are checked exactly as for messaging (twilio.md §4: ``CC_PUBLIC_URL`` + path, every
posted parameter). A call carries no text: a reply typed in the console is refused with the reason.
"""

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit

from ...models import Call, CallOutcome, Message
from .. import PermanentSendError, SendResult
from ..twilio_messaging.adapter import verify as _verify_twilio
from .task_names import PUT_THROUGH


def verify(request: HttpRequest) -> bool:
    return _verify_twilio(request)


def validate_outbound(text: str) -> None:
    raise ValidationError(
        _("A phone call carries no text: call the customer back, or write to them on another channel."),
        code="voice_no_text")


def send(message: Message, *, to: str, from_: str) -> SendResult:
    raise PermanentSendError("a voice conversation carries no text messages", code="voice_no_text")


def conversation_assigned(conversation, agent) -> None:
    """An agent took a voice conversation (accepted its offer, was assigned it, had it
    transferred): its caller, on hold or waiting for a callback, is put through to them in the
    conversation's conference. Caller is in the transaction: the REST requests leave after
    commit, from a task (never a network call inside a transaction); the agent's Answer may
    have done it first, which the task then finds."""
    live = (Call.objects.filter(conversation_id=conversation.pk).exclude(outcome=CallOutcome.VOICEMAIL)
            .filter(Q(ended_at__isnull=True) | Q(callback_requested=True)).exists())
    if live:
        enqueue_on_commit(PUT_THROUGH, conversation.pk, agent.pk)
