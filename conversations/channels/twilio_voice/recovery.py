"""Tick job of the voice channel: a call whose end Twilio never told us (its status callback not
configured on the number, or lost) is ended after a grace, as a "completed" callback would end it:
a caller left in the menu does not keep a pending conversation for ever, one left on hold is
abandoned (routing stops offering a call nobody is on)."""

from datetime import timedelta

from django.utils import timezone

from ...models import Call
from .calls import call_status_update

# No call of ours lasts this long (Twilio's limit for a call is 4 hours).
STALE_AFTER = timedelta(hours=4)
BATCH = 100


def stale_calls_end() -> int:
    cutoff = timezone.now() - STALE_AFTER
    sids = list(Call.objects.filter(ended_at__isnull=True, started_at__lt=cutoff).order_by("started_at")
                .values_list("call_sid", flat=True)[:BATCH])
    for sid in sids:
        call_status_update(call_sid=sid, status="completed")
    return len(sids)
