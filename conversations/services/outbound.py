"""Outbound messages: store first, deliver after commit, record every provider status.

``message_send`` validates and stores the message (status ``pending``) in one transaction and
enqueues ``deliver_message`` on commit. The task hands it to the channel adapter outside any
transaction; the provider id is written the moment the provider answers, so a retry that finds it
never sends twice. Status callbacks are ranked and never move a message backwards.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit
from contactcenter.storable import json_storable, text_storable
from profiles.models import ConsentStatus, IdentityKind
from profiles.selectors import consent_check
from profiles.services import consent_record

from .. import lifecycle
from ..channels.registry import validate_outbound
from ..events import (
    message_event,
    message_recipients,
    notify_message_created,
    send_on_commit,
)
from ..models import (
    WHATSAPP_WINDOW,
    Agent,
    Channel,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    Message,
    MessageKind,
    MessageStatusEvent,
)
from ..sequence import message_seq_next
from ..task_names import DELIVER_MESSAGE

# Twilio's statuses ranked (twilio.md §1): callbacks arrive out of order, a message only moves up.
STATUS_RANK = {
    DeliveryStatus.PENDING: 0, DeliveryStatus.ACCEPTED: 1, DeliveryStatus.SCHEDULED: 1, DeliveryStatus.QUEUED: 2,
    DeliveryStatus.SENDING: 3, DeliveryStatus.SENT: 4, DeliveryStatus.PARTIALLY_DELIVERED: 5,
    DeliveryStatus.UNDELIVERED: 6, DeliveryStatus.FAILED: 6, DeliveryStatus.CANCELED: 6,
    DeliveryStatus.DELIVERED: 6, DeliveryStatus.READ: 7,
}
TERMINAL = {DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED, DeliveryStatus.READ,
            DeliveryStatus.CANCELED}
_IDENTITY_FOR_CHANNEL = {
    Channel.SMS: [IdentityKind.PHONE, IdentityKind.WHATSAPP],
    Channel.WHATSAPP: [IdentityKind.WHATSAPP, IdentityKind.PHONE],
    Channel.EMAIL: [IdentityKind.EMAIL],
    Channel.VOICE: [IdentityKind.PHONE],
    Channel.WEBCHAT: [IdentityKind.WEB_VISITOR],
}


class SendRefused(ValidationError):
    """The message may not be sent (opted out, outside the WhatsApp window, too long …)."""


@dataclass(frozen=True)
class Destination:
    to: str
    from_: str


def destination_for(conversation: Conversation) -> Destination:
    kinds = _IDENTITY_FOR_CHANNEL.get(conversation.channel, [])
    identities = {i.kind: i.value for i in conversation.customer.identities.filter(kind__in=kinds).order_by("-last_seen_at")}
    to = next((identities[k] for k in kinds if k in identities), "")
    if not to:
        raise SendRefused(
            _("The customer has no %(channel)s address."), code="no_address",
            params={"channel": conversation.get_channel_display()},
        )
    return Destination(to=to, from_=conversation.inbox.address)


def whatsapp_window_open(conversation: Conversation, *, now=None) -> bool:
    last_inbound = (
        Message.objects.filter(customer_id=conversation.customer_id, channel=Channel.WHATSAPP,
                               direction=Direction.INBOUND, kind=MessageKind.MESSAGE)
        .order_by("-created_at").values_list("created_at", flat=True).first()
    )
    return bool(last_inbound and (now or timezone.now()) - last_inbound < WHATSAPP_WINDOW)


def _check_sendable(conversation: Conversation, text: str, template: dict | None) -> Destination:
    destination = destination_for(conversation)
    decision = consent_check(channel=conversation.channel, address=destination.to, sender=destination.from_)
    if not decision.allowed:
        raise SendRefused(_("Not sent: %(reason)s."), code="opted_out", params={"reason": decision.reason})
    try:
        validate_outbound(conversation.channel, text)
    except ValidationError as exc:
        raise SendRefused(exc.messages[0], code=exc.code or "not_sendable") from exc
    if conversation.channel == Channel.WHATSAPP and not template and not whatsapp_window_open(conversation):
        raise SendRefused(
            _("WhatsApp allows free-form replies only within 24 hours of the customer's last message; "
              "send an approved template instead."),
            code="whatsapp_window",
        )
    if template:
        approved = {t.get("content_sid") for t in conversation.inbox.settings.get("whatsapp_templates", [])}
        if conversation.channel != Channel.WHATSAPP or template.get("content_sid") not in approved:
            raise SendRefused(
                _("“%(sid)s” is not an approved WhatsApp template of this inbox."), code="template_not_approved",
                params={"sid": template.get("content_sid", "")},
            )
    if not text.strip() and not template:
        raise SendRefused(_("The message is empty."), code="empty")
    return destination


def message_send(*, conversation: Conversation, agent: Agent | None, text: str, template: dict | None = None,
                 reopen: bool = True) -> Message:
    """Store an outbound reply and deliver it after commit. Raises ``SendRefused`` with the reason
    (opted out, WhatsApp window, too long, no address) before anything reaches the provider.
    ``reopen=False``: a message that is not a reply (a survey after the contact) leaves a resolved
    conversation resolved."""
    text = text_storable(text)  # PostgreSQL refuses NUL (contactcenter.storable)
    destination = _check_sendable(conversation, text, template)
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        message = Message.objects.create(
            seq=message_seq_next(conversation), conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
            channel=conversation.channel, direction=Direction.OUTBOUND, kind=MessageKind.MESSAGE,
            author_agent=agent, text=text, delivery_status=DeliveryStatus.PENDING, created_at=now,
            metadata={"to": destination.to, "from": destination.from_, **({"template": template} if template else {})},
        )
        fields = ["last_message_at", "waiting_since", "updated_at"]
        conversation.last_message_at = now
        conversation.waiting_since = None
        if agent is not None and conversation.first_response_at is None:
            conversation.first_response_at = now
            fields.append("first_response_at")
        if conversation.status == ConversationStatus.RESOLVED and reopen:
            conversation.status = ConversationStatus.OPEN
            conversation.resolved_at = None
            fields += ["status", "resolved_at"]
            lifecycle.reopened(conversation.pk)
        conversation.save(update_fields=fields)
        notify_message_created(message, assignee_id=conversation.assignee_id)
        enqueue_on_commit(DELIVER_MESSAGE, message.pk)
    return message


def _notify_delivery(message: Message) -> None:
    assignee = Conversation.objects.filter(pk=message.conversation_id).values_list("assignee_id", flat=True).first()
    send_on_commit(message_recipients(message, assignee), message_event("message.delivery", message))


def delivery_record_sent(*, message_id: int, provider_id: str, status: str) -> Message:
    """The provider accepted the message: keep its id, then apply callbacks that came first."""
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.provider_id and message.provider_id != provider_id:
            return message
        message.provider_id = provider_id
        message.save(update_fields=["provider_id"])
        MessageStatusEvent.objects.filter(provider_id=provider_id, message__isnull=True).update(message=message)
        ranked = [status] + list(MessageStatusEvent.objects.filter(message=message).values_list("status", flat=True))
        _apply_best_status(message, ranked)
        error = MessageStatusEvent.objects.filter(message=message).exclude(error_code="").order_by("-id").first()
        if error and message.delivery_status in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED):
            message.delivery_error_code = error.error_code
            message.delivery_error = f"Provider error {error.error_code}"
        message.save(update_fields=["delivery_status", "delivery_error_code", "delivery_error"])
        _notify_delivery(message)
    return message


def delivery_record_failed(*, message_id: int, reason: str, code: str = "") -> Message:
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        message.delivery_status = DeliveryStatus.FAILED
        message.delivery_error_code = code[:32]
        message.delivery_error = reason[:2000]
        message.save(update_fields=["delivery_status", "delivery_error_code", "delivery_error"])
        if code == "21610":
            _record_opt_out_from_error(message)
        _notify_delivery(message)
    return message


def delivery_retry(*, message: Message, agent: Agent | None) -> Message:
    """Queue a failed outbound message for delivery again (the agent's Retry). Only a message the
    provider never accepted (no provider id) can be retried: one it accepted and later reported
    undelivered has an outcome of its own, and the agent sends a new reply. The sending checks run
    again (the customer may have opted out since, or have a new address); a refusal raises
    ``SendRefused`` and changes nothing. Caller checked the agent's access to the conversation."""
    if message.direction != Direction.OUTBOUND or message.kind != MessageKind.MESSAGE:
        raise SendRefused(_("Only a reply sent to the customer can be retried."), code="not_retryable")
    destination = _check_sendable(message.conversation, message.text, (message.metadata or {}).get("template"))
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.delivery_status != DeliveryStatus.FAILED or message.provider_id:
            raise SendRefused(_("Only a message that failed before the provider accepted it can be retried."),
                              code="not_pending")
        metadata = {key: value for key, value in (message.metadata or {}).items()
                    if key not in ("attempt_started", "delivery_attempts")}
        history = list(metadata.get("retries", []))[-20:]
        history.append({"at": timezone.now().isoformat(), "agent": agent.pk if agent else None,
                        "error": message.delivery_error[:300], "code": message.delivery_error_code})
        metadata.update({"retries": history, "to": destination.to, "from": destination.from_})
        message.metadata = metadata
        message.delivery_status = DeliveryStatus.PENDING
        message.delivery_error = ""
        message.delivery_error_code = ""
        message.delivery_claimed_at = None
        message.save(update_fields=["metadata", "delivery_status", "delivery_error", "delivery_error_code",
                                    "delivery_claimed_at"])
        _notify_delivery(message)
        enqueue_on_commit(DELIVER_MESSAGE, message.pk)
    return message


def _apply_best_status(message: Message, statuses: list[str]) -> None:
    best = message.delivery_status or DeliveryStatus.PENDING
    for status in statuses:
        if status not in STATUS_RANK:
            continue
        if best in TERMINAL and STATUS_RANK[status] <= STATUS_RANK[best]:
            continue
        if STATUS_RANK[status] > STATUS_RANK.get(best, 0):
            best = status
    message.delivery_status = best


def _record_opt_out_from_error(message: Message) -> None:
    to, from_ = message.metadata.get("to", ""), message.metadata.get("from", "")
    if to:
        from profiles.models import Customer

        consent_record(
            customer=Customer.objects.get(pk=message.customer_id), channel=message.channel, address=to,
            sender=from_, status=ConsentStatus.OPTED_OUT, source="error 21610",
            evidence=f"Twilio refused message {message.pk} with 21610 (recipient opted out)",
        )


def delivery_status_receive(*, provider_id: str, status: str, error_code: str = "", payload: dict | None = None) -> bool:
    """A provider status callback. Every (provider id, status) is kept once; the message moves only
    forward; a callback for a message not recorded yet is kept and applied when it is.
    Returns False for a duplicate callback."""
    # As PostgreSQL stores them (contactcenter.storable): a NUL must not turn a callback into a 500.
    provider_id, error_code = text_storable(provider_id or ""), text_storable(error_code or "")
    payload = json_storable(payload or {})
    status = (status or "").lower()
    if not provider_id or status not in STATUS_RANK:
        return False
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(provider_id=provider_id, direction=Direction.OUTBOUND).first()
        try:
            with transaction.atomic():
                MessageStatusEvent.objects.create(
                    message=message, provider_id=provider_id, status=status, error_code=(error_code or "")[:32],
                    payload=payload or {},
                )
        except IntegrityError:
            return False
        if message is None:
            return True
        before = message.delivery_status
        _apply_best_status(message, [status])
        fields = ["delivery_status"]
        if error_code and message.delivery_status in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED):
            message.delivery_error_code = error_code[:32]
            message.delivery_error = f"Provider error {error_code}"
            fields += ["delivery_error_code", "delivery_error"]
        if message.delivery_status != before or len(fields) > 1:
            message.save(update_fields=fields)
            _notify_delivery(message)
        if str(error_code) == "21610":
            _record_opt_out_from_error(message)
    return True
