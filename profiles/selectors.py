"""Reads on customers. Permission-checked fetches are named ``access_*`` (STYLE.md habit 7)."""

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404

from contactcenter.permissions import is_contact_center_staff
from contactcenter.storable import text_storable

from . import addresses
from .models import Customer, CustomerMerge, Identity, IdentityKind


def visible_customers(*, user) -> QuerySet[Customer]:
    """Customers ``user`` may see. Every contact-center role sees the customer directory (an agent
    must be able to look a caller up); anyone else sees nothing."""
    if not is_contact_center_staff(user):
        return Customer.objects.none()
    return Customer.objects.all()


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
