"""Celery tasks of the Twilio messaging channel: ingest a stored webhook, fetch MMS/WhatsApp media."""

from celery import shared_task


# max_retries mirrors ingest.MAX_ATTEMPTS; the attempts counted on the event are the real bound.
@shared_task(bind=True, name="conversations.process_twilio_inbound", ignore_result=True, acks_late=True,
             max_retries=8)
def process_twilio_inbound(self, event_id: int) -> str:
    """Ingest one stored Twilio inbound webhook (idempotent: see ingest.py). A failure is
    recorded on the event, which says when to try again: this retry is the fast path, the
    recovery tick the backstop when the retry is lost."""
    from .ingest import twilio_inbound_event_process

    outcome = twilio_inbound_event_process(event_id=event_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="conversations.fetch_twilio_media", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def fetch_twilio_media(message_id: int) -> int:
    """Download the pending MMS/WhatsApp media of a message (SSRF-checked), or mark it unavailable."""
    import requests
    from django.conf import settings

    from ...models import Attachment, AttachmentState
    from ...services.attachments import attachment_mark_unavailable, attachment_store
    from .. import media
    from ..twilio_client import account_sid, auth_token

    done = 0
    for attachment in Attachment.objects.filter(message_id=message_id, state=AttachmentState.PENDING):
        try:
            fetched = media.fetch(attachment.source_url, auth=(account_sid(), auth_token()),
                                  max_bytes=settings.CC_MAX_ATTACHMENT_BYTES)
        except (media.MediaRefused, requests.HTTPError) as exc:
            attachment_mark_unavailable(attachment=attachment, reason=str(exc))
            continue
        attachment_store(attachment=attachment, content=fetched.content, content_type=fetched.content_type)
        done += 1
    return done
