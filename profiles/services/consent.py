"""Consent per (channel, customer address, our sender): recorded from every source, checked
before every outbound send."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import Consent, ConsentStatus, Customer


@dataclass(frozen=True)
class ConsentDecision:
    allowed: bool
    consent: Consent | None = None

    @property
    def reason(self) -> str:
        if self.allowed or self.consent is None:
            return ""
        # Shown to agents: in their language and their time zone (both active for the request).
        when = timezone.localtime(self.consent.changed_at).strftime("%Y-%m-%d %H:%M %Z")
        return _("%(address)s opted out on %(when)s (%(source)s)") % {
            "address": self.consent.address, "when": when, "source": self.consent.source or _("unknown source")}


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


def consent_check(*, channel: str, address: str, sender: str = "") -> ConsentDecision:
    """May we send to ``address`` from ``sender`` on ``channel``? A sender-specific record wins over
    a channel-wide one; no record means allowed (the customer wrote to us, or is a new contact)."""
    records = {c.sender: c for c in Consent.objects.filter(channel=channel, address=address, sender__in=[sender, ""])}
    consent = records.get(sender) or records.get("")
    if consent is not None and consent.status == ConsentStatus.OPTED_OUT:
        return ConsentDecision(allowed=False, consent=consent)
    return ConsentDecision(allowed=True, consent=consent)
