"""``POST /webhooks/email/``: one raw RFC 5322 message per request (message/rfc822 or
application/octet-stream), authenticated by the ``X-CC-Email-Secret`` header.

The secret is either ``CC_EMAIL_WEBHOOK_SECRET`` (any of our email inboxes, chosen by recipient)
or one inbox's own ``secret`` (that inbox only). Wrong or missing → 403 and nothing stored.
"""

import hmac
import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from contactcenter.client_address import request_client_address

from ...models import Channel, Inbox
from .ingest import EmailRejected, EmailTooLarge, email_receive

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-CC-Email-Secret"
ACCEPTED_TYPES = ("message/rfc822", "application/octet-stream", "text/plain", "")


def _authorised(presented: str) -> tuple[bool, Inbox | None]:
    """(authorised, the inbox the secret is bound to or None for the global secret). Every
    candidate is compared in constant time, so the answer's timing says nothing about secrets."""
    if not presented:
        return False, None
    presented_bytes = presented.encode()
    global_ok = bool(settings.CC_EMAIL_WEBHOOK_SECRET) and hmac.compare_digest(
        presented_bytes, settings.CC_EMAIL_WEBHOOK_SECRET.encode()
    )
    matched = None
    for inbox in Inbox.objects.filter(kind=Channel.EMAIL, is_active=True).exclude(secret=""):
        if hmac.compare_digest(presented_bytes, inbox.secret.encode()):
            matched = inbox
    if global_ok:
        return True, None
    return matched is not None, matched


def _refusal() -> str:
    """What a refused caller needs to know to get in: the header, and where its secret is set."""
    where = ("the environment variable CC_EMAIL_WEBHOOK_SECRET (any email inbox) or the email inbox's own "
             "Secret in the admin (/admin/conversations/inbox/)")
    configured = bool(settings.CC_EMAIL_WEBHOOK_SECRET) or Inbox.objects.filter(
        kind=Channel.EMAIL, is_active=True).exclude(secret="").exists()
    if not configured:
        return (f"No email webhook secret is configured here: set {where}, then send it in the "
                f"{SECRET_HEADER} header.")
    return f"Missing or wrong {SECRET_HEADER} header: send the secret set in {where}."


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
@require_POST
def email_inbound(request: HttpRequest) -> JsonResponse:
    ok, bound_inbox = _authorised(request.headers.get(SECRET_HEADER, ""))
    if not ok:
        logger.warning("rejected email webhook without a valid secret from %s", request_client_address(request))
        return _error(403, _refusal())
    limit = settings.CC_MAX_EMAIL_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    too_large = f"Message too large: the limit is {limit} bytes."
    if declared > limit:
        return _error(413, too_large)
    content_type = (request.content_type or "").lower()
    if content_type not in ACCEPTED_TYPES:
        return _error(415, "Send the raw message as message/rfc822 or application/octet-stream.")
    # Read at most limit + 1 bytes: a body without (or lying about) Content-Length cannot make us
    # hold more than the limit in memory.
    raw = request.read(limit + 1)
    if len(raw) > limit:
        return _error(413, too_large)
    if not raw.strip():
        return _error(400, "The request body must be a raw RFC 5322 message.")
    try:
        result = email_receive(raw=raw, inbox=bound_inbox, source="webhook")
    except EmailTooLarge as exc:
        return _error(413, exc.reason)
    except EmailRejected as exc:
        return _error(422, exc.reason)
    return JsonResponse(
        {"message": result.message.pk, "conversation": result.conversation.pk, "duplicate": result.duplicate},
        status=202,
    )
