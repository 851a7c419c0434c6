"""Reads on customers. Permission-checked fetches are named ``access_*`` (STYLE.md habit 7)."""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.permissions import is_contact_center_staff, is_supervisor
from contactcenter.storable import text_storable

from . import addresses
from .access_registry import served_customers
from .models import (
    Consent,
    ConsentStatus,
    Customer,
    CustomerMerge,
    Identity,
    IdentityKind,
)


def visible_customers(*, user) -> QuerySet[Customer]:
    """Customers ``user`` may see: the one rule behind the directory, the customer pages and the
    API (``access_customer``, ``customer_search``). With ``CC_CUSTOMER_ACCESS = "all"`` (the
    default) every contact-center role sees the whole directory (an agent must be able to look a
    caller up); with ``"served"`` agents see only the customers the registered scopes grant them
    (``access_registry``: who contacted a queue they serve, whom they served), supervisors and
    admins still all. Anyone else sees nothing."""
    if not is_contact_center_staff(user):
        return Customer.objects.none()
    if settings.CC_CUSTOMER_ACCESS == "all" or is_supervisor(user):
        return Customer.objects.all()
    return Customer.objects.filter(served_customers(user))


def access_customer(*, user, customer_id, lock: bool = False) -> Customer:
    """The customer ``customer_id`` if ``user`` may see it, else ``Http404`` (never 403: a
    stranger learns nothing about which ids exist)."""
    try:
        customer_id = int(customer_id)
    except (TypeError, ValueError):
        raise Http404("No such customer") from None
    qs = visible_customers(user=user)
    if lock:
        qs = qs.select_for_update()
    customer = qs.filter(pk=customer_id).first()
    if customer is None:
        raise Http404("No such customer")
    return customer


def access_customer_merge(*, user, merge_id) -> CustomerMerge:
    try:
        merge_id = int(merge_id)
    except (TypeError, ValueError):
        raise Http404("No such merge") from None
    if not is_contact_center_staff(user):
        raise Http404("No such merge")
    merge = CustomerMerge.objects.select_related("source", "target").filter(pk=merge_id).first()
    if merge is None:
        raise Http404("No such merge")
    if settings.CC_CUSTOMER_ACCESS != "all" and not visible_customers(user=user).filter(pk=merge.target_id).exists():
        raise Http404("No such merge")  # a merge is seen through its customer
    return merge


def customer_search(*, user, q: str = "", phone: str = "", email: str = "", include_merged: bool = False) -> QuerySet[Customer]:
    """Customers matching free text (name or any identity value), a phone in any written form, or
    an email. ``ValidationError`` when ``phone``/``email`` do not parse."""
    qs = visible_customers(user=user)
    if not include_merged:
        qs = qs.filter(merged_into__isnull=True)
    if phone:
        # Lenient: a customer's number delivered by a provider may be only *possible* (addresses.py),
        # and an agent looking for it must find it.
        number = addresses.normalize_phone(phone, strict=False)
        qs = qs.filter(identities__kind__in=[IdentityKind.PHONE, IdentityKind.WHATSAPP], identities__value=number)
    if email:
        qs = qs.filter(identities__kind=IdentityKind.EMAIL, identities__value=addresses.normalize_email(email))
    if q:
        text = text_storable(q).strip()[:200]  # a NUL would reach PostgreSQL's LIKE (contactcenter.storable)
        condition = Q(display_name__icontains=text) | Q(identities__value__icontains=text.lower())
        try:
            condition |= Q(identities__value=addresses.normalize_phone(text, strict=False))
        except ValidationError:
            pass
        qs = qs.filter(condition)
    return qs.distinct().prefetch_related(
        Prefetch("identities", queryset=Identity.objects.order_by("kind", "value")), "tags"
    )


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


def consent_check(*, channel: str, address: str, sender: str = "") -> ConsentDecision:
    """May we send to ``address`` from ``sender`` on ``channel``? A sender-specific record wins over
    a channel-wide one; no record means allowed (the customer wrote to us, or is a new contact)."""
    records = {c.sender: c for c in Consent.objects.filter(channel=channel, address=address, sender__in=[sender, ""])}
    consent = records.get(sender) or records.get("")
    if consent is not None and consent.status == ConsentStatus.OPTED_OUT:
        return ConsentDecision(allowed=False, consent=consent)
    return ConsentDecision(allowed=True, consent=consent)
