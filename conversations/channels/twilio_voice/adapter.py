"""Twilio voice: verify a webhook, tell the call an agent took it (the channel registry's hook).

Signatures are checked exactly as for messaging (twilio.md §4: ``CC_PUBLIC_URL`` + path, every
posted parameter). A call carries no text: a reply typed in the console is refused with the reason.
"""

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit

from ...models import CALL_FINAL_STATUSES, Call, CallOutcome, Message
from .. import PermanentSendError, SendResult
from ..twilio_messaging.adapter import verify as _verify_twilio
from .task_names import CALL_BACK, CONNECT_CALL


def verify(request: HttpRequest) -> bool:
    return _verify_twilio(request)


def validate_outbound(text: str) -> None:
    raise ValidationError(
        _("A phone call carries no text: call the customer back, or write to them on another channel."),
        code="voice_no_text")


def send(message: Message, *, to: str, from_: str) -> SendResult:
    raise PermanentSendError("a voice conversation carries no text messages", code="voice_no_text")


def conversation_assigned(conversation, agent) -> None:
    """An agent took a voice conversation (accepted its offer, or was assigned it): a caller still
    waiting on hold is put through to them (their call is redirected to our connect TwiML); one
    who asked for a callback is called back. Caller is in the transaction: the REST request
    leaves after commit, from a task (never a network call inside a transaction)."""
    call = (Call.objects.filter(conversation_id=conversation.pk).order_by("-started_at", "-id")
            .only("pk", "status", "outcome", "callback_requested", "callback_call_sid", "answered_at").first())
    if call is None:
        return
    if call.callback_requested and not call.callback_call_sid and not call.answered_at:
        enqueue_on_commit(CALL_BACK, call.pk, agent.pk)
    elif call.status not in CALL_FINAL_STATUSES and call.outcome in ("", CallOutcome.ANSWERED):
        enqueue_on_commit(CONNECT_CALL, call.pk, agent.pk)
