"""Consent per (channel, customer address, our sender): recorded from every source (the check
before every outbound send is a read: ``profiles.selectors.consent_check``)."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import Consent, Customer


def consent_record(
    *, customer: Customer, channel: str, address: str, status: str, source: str, sender: str = "", evidence: str = ""
) -> Consent:
    """Set the consent of ``address`` towards ``sender`` (blank: every sender of the channel)."""
    values = {"customer": customer, "status": status, "source": source[:64], "evidence": evidence[:2000],
              "changed_at": timezone.now()}
    for _attempt in range(2):
        try:
            with transaction.atomic():
                consent, _ = Consent.objects.update_or_create(
                    channel=channel, address=address, sender=sender, defaults=values
                )
                return consent
        except IntegrityError:
            continue
    return Consent.objects.get(channel=channel, address=address, sender=sender)
