"""Merge suggestions: hints that two customers are one person, for an agent to confirm or dismiss."""

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import addresses
from ..models import Customer, Identity, IdentityKind, MergeSuggestion, SuggestionStatus

# Domains shared by millions of unrelated people: the same name there proves nothing.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.jp", "ymail.com", "outlook.com", "outlook.jp",
        "hotmail.com", "hotmail.co.jp", "live.com", "live.jp", "msn.com", "icloud.com", "me.com", "mac.com",
        "aol.com", "proton.me", "protonmail.com", "docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp",
        "i.softbank.jp", "nifty.com", "biglobe.ne.jp", "ocn.ne.jp", "example.com",
    }
)

# A phone-looking run in a signature: digits with the separators people type (full-width too).
_PHONE_IN_TEXT = re.compile(r"(?:\+|＋)?[0-9０-９][0-9０-９\-‐－ー−()（）\s.]{7,18}[0-9０-９]")


def suggestion_record(*, customer: Customer, candidate: Customer, reason: str, evidence: dict) -> MergeSuggestion | None:
    """Record that ``candidate`` may be ``customer``; one pending suggestion per pair and reason."""
    if customer.pk == candidate.pk:
        return None
    existing = MergeSuggestion.objects.filter(
        customer=customer, candidate=candidate, reason=reason, status=SuggestionStatus.PENDING
    ).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return MergeSuggestion.objects.create(customer=customer, candidate=candidate, reason=reason, evidence=evidence)
    except IntegrityError:
        return MergeSuggestion.objects.filter(
            customer=customer, candidate=candidate, reason=reason, status=SuggestionStatus.PENDING
        ).first()


def suggest_from_email_signature(*, customer: Customer, text: str) -> list[MergeSuggestion]:
    """An email whose body names a phone number another customer owns: suggest, never link.

    Anyone can type any number into a signature, so this is a claim, not a proof.
    """
    suggestions = []
    seen: set[str] = set()
    for match in _PHONE_IN_TEXT.finditer(text or ""):
        try:
            phone = addresses.normalize_phone(match.group(0))
        except ValidationError:
            continue
        if phone in seen:
            continue
        seen.add(phone)
        owner_identity = (
            Identity.objects.select_related("customer")
            .filter(kind=IdentityKind.PHONE, value=phone)
            .exclude(customer=customer)
            .first()
        )
        if owner_identity is None:
            continue
        start = max(match.start() - 40, 0)
        suggestion = suggestion_record(
            customer=owner_identity.customer,
            candidate=customer,
            reason="signature_phone",
            evidence={"phone": phone, "excerpt": (text[start:match.end() + 40]).strip()},
        )
        if suggestion:
            suggestions.append(suggestion)
    return suggestions


def _name_key(name: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", name or "")).strip().casefold()


def suggest_same_name_same_domain(*, customer: Customer) -> list[MergeSuggestion]:
    """Same display name and an email on the same (non free-mail) domain: likely one person."""
    key = _name_key(customer.display_name)
    if not key:
        return []
    domains = {
        value.rsplit("@", 1)[1]
        for value in customer.identities.filter(kind=IdentityKind.EMAIL).values_list("value", flat=True)
    } - FREE_MAIL_DOMAINS
    suggestions = []
    for domain in sorted(domains):
        others = (
            Identity.objects.select_related("customer")
            .filter(kind=IdentityKind.EMAIL, value__endswith=f"@{domain}", customer__merged_into__isnull=True)
            .exclude(customer=customer)
        )
        for identity in others:
            if _name_key(identity.customer.display_name) != key:
                continue
            suggestion = suggestion_record(
                customer=identity.customer,
                candidate=customer,
                reason="same_name_same_domain",
                evidence={"name": customer.display_name, "domain": domain, "matched_email": identity.value},
            )
            if suggestion:
                suggestions.append(suggestion)
    return suggestions


def merge_suggestion_decide(*, suggestion: MergeSuggestion, confirm: bool, actor=None):
    """Confirm (merge the candidate into the customer) or dismiss a pending suggestion."""
    from .merge import MergeError, customer_merge

    with transaction.atomic():
        suggestion = MergeSuggestion.objects.select_for_update().get(pk=suggestion.pk)
        if suggestion.status != SuggestionStatus.PENDING:
            raise MergeError(_("This suggestion was already decided."), code="suggestion_decided")
        if not confirm:
            suggestion.status = SuggestionStatus.DISMISSED
            suggestion.decided_at = timezone.now()
            suggestion.decided_by = actor
            suggestion.save(update_fields=["status", "decided_at", "decided_by"])
            return None
        merge = customer_merge(source=suggestion.candidate, target=suggestion.customer, actor=actor, suggestion=suggestion)
        MergeSuggestion.objects.filter(pk=suggestion.pk).update(
            status=SuggestionStatus.CONFIRMED, decided_at=timezone.now(), decided_by=actor
        )
        return merge
