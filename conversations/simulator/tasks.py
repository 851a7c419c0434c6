"""Dev-only task of the simulator: what Twilio would send back for a message we recorded."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="conversations.simulate_twilio_delivery", ignore_result=True)
def simulate_twilio_delivery(sid: str, to: str, from_: str) -> None:
    """Dev only (no Twilio credentials): send the status callbacks Twilio would send for a recorded
    message, signed, to our own status webhook — the same door real callbacks use."""
    import time

    from django.conf import settings

    from ..channels.twilio_client import account_sid
    from .client import post_signed

    for status in ("sent", "delivered"):
        params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                  "AccountSid": account_sid(), "To": to, "From": from_, "ApiVersion": "2010-04-01"}
        try:
            post_signed(settings.CC_SELF_URL, "/webhooks/twilio/messaging/status/", params, timeout=10)
        except OSError:
            logger.warning("simulated status callback for %s could not reach %s", sid, settings.CC_SELF_URL)
            return
        time.sleep(0.5)
