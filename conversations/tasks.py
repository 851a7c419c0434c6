"""Celery tasks of conversations: take ids, re-fetch, check state, call a service (STYLE.md habit 10)."""

import logging
from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)

CLAIM_TTL = timedelta(minutes=5)
# Every claim of a send counts, whichever way it was queued (the task's own retries, the tick after
# a lost task or a worker that died mid-send): past this many the message ends failed, so nothing
# the tick re-queues stays "pending" forever. Above max_retries + 1 so one run's retries fit.
MAX_DELIVERY_ATTEMPTS = 20


def _is_transient_infrastructure(exc: Exception) -> bool:
    """Our own database or network hiccup (not the message's fault): worth the bounded retries."""
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError, OSError))


@shared_task(bind=True, name="conversations.deliver_message", max_retries=8, acks_late=True)
def deliver_message(self, message_id: int) -> str:
    """Send one stored outbound message through its channel adapter.

    Idempotent: a message that already has a provider id was sent; it is never sent again. After an
    ambiguous failure (the connection broke after the request may have reached the provider) the
    retry first asks the provider whether the message went out, and records that id instead of
    sending twice. Transient errors retry with exponential backoff; permanent ones mark it failed.
    """
    from .channels import PermanentSendError, TransientSendError
    from .models import DeliveryStatus, Message
    from .services.outbound import delivery_record_failed, delivery_record_sent

    message = Message.objects.select_related("conversation").filter(pk=message_id).first()
    if message is None or message.provider_id or message.delivery_status != DeliveryStatus.PENDING:
        return "skipped"
    to, from_ = message.metadata.get("to", ""), message.metadata.get("from", "")
    from .channels.registry import adapter_for

    adapter = adapter_for(message.channel)
    if adapter is None:
        delivery_record_failed(message_id=message.pk, reason=f"No outbound adapter for {message.get_channel_display()}")
        return "failed"
    # Claim the send (healthchecks' pattern): only the execution whose UPDATE matched goes on. A
    # claim older than CLAIM_TTL belongs to a worker that died mid-send and may be taken over.
    now = timezone.now()
    claimed = Message.objects.filter(pk=message.pk, provider_id__isnull=True, delivery_status=DeliveryStatus.PENDING).filter(
        Q(delivery_claimed_at__isnull=True) | Q(delivery_claimed_at__lt=now - CLAIM_TTL)
    ).update(delivery_claimed_at=now)
    if claimed != 1:
        return "claimed elsewhere"
    attempt_started = message.metadata.get("attempt_started")
    attempts = int(message.metadata.get("delivery_attempts", 0)) + 1
    if attempts > MAX_DELIVERY_ATTEMPTS:
        delivery_record_failed(
            message_id=message.pk, code="attempts",
            reason=f"Gave up after {MAX_DELIVERY_ATTEMPTS} attempts (the worker stopped during the send each time)",
        )
        return "failed"
    try:
        if attempt_started and hasattr(adapter, "find_sent"):
            found = adapter.find_sent(message, to=to, from_=from_, since=attempt_started)
            if found and not Message.objects.filter(provider_id=found).exclude(pk=message.pk).exists():
                delivery_record_sent(message_id=message.pk, provider_id=found, status="queued")
                return "reconciled"
        Message.objects.filter(pk=message.pk).update(
            metadata={**message.metadata, "attempt_started": timezone.now().isoformat(), "delivery_attempts": attempts}
        )
        message.refresh_from_db()
        result = adapter.send(message, to=to, from_=from_)
    except PermanentSendError as exc:
        delivery_record_failed(message_id=message.pk, reason=exc.reason, code=exc.code)
        return "failed"
    except TransientSendError as exc:
        if self.request.retries >= self.max_retries:
            delivery_record_failed(message_id=message.pk, reason=f"Gave up after retries: {exc.reason}")
            return "failed"
        logger.warning("transient send failure for message %s: %s", message.pk, exc.reason)
        Message.objects.filter(pk=message.pk).update(delivery_claimed_at=None)  # the retry claims again
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 300)) from exc
    except Exception as exc:  # noqa: BLE001 - an adapter bug or input it cannot take must not stay pending
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if not _is_transient_infrastructure(exc):
            logger.exception("delivery of message %s failed for good", message.pk)
            delivery_record_failed(message_id=message.pk, reason=f"Could not be sent: {reason}", code="error")
            return "failed"
        if self.request.retries >= self.max_retries:
            delivery_record_failed(message_id=message.pk, reason=f"Gave up after retries: {reason}")
            return "failed"
        logger.warning("transient failure delivering message %s: %s", message.pk, reason)
        Message.objects.filter(pk=message.pk).update(delivery_claimed_at=None)
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 300)) from exc
    delivery_record_sent(message_id=message.pk, provider_id=result.provider_id, status=result.status)
    return "sent"


@shared_task(name="conversations.route_conversation", ignore_result=True, acks_late=True)
def route_conversation_task(conversation_id: int) -> str:
    """Offer one waiting conversation to an agent (idempotent: see routing/decisions.py)."""
    from .routing.decisions import route_conversation

    return route_conversation(conversation_id=conversation_id).reason or "offered"


@shared_task(name="conversations.route_for_agent", ignore_result=True, acks_late=True)
def route_for_agent_task(agent_id: int) -> int:
    from .routing.decisions import route_for_agent

    return route_for_agent(agent_id=agent_id)
