"""Finding the customer behind an address, and attaching new addresses to a customer."""

import enum
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import addresses
from ..models import Customer, Identity, IdentityKind, IdentitySource

# Sources that prove the customer controls the address. Anything else is only a claim: it may
# suggest a merge to an agent but never links two customers by itself (threats.md: a visitor who
# types an existing customer's email must not get that customer's history).
PROVEN_SOURCES = frozenset(
    {IdentitySource.INBOUND, IdentitySource.PROVIDER, IdentitySource.SIGNED, IdentitySource.AGENT, IdentitySource.MERGE}
)

# Addresses a provider delivered a message from: the customer's, whatever our phone metadata
# says (addresses.normalize_delivered); everything else (typed, imported) is validated strictly.
DELIVERED_SOURCES = frozenset({IdentitySource.INBOUND, IdentitySource.PROVIDER})

# The same number on SMS and WhatsApp is the same person: the provider proves both.
_SIBLING_KINDS = {IdentityKind.PHONE: IdentityKind.WHATSAPP, IdentityKind.WHATSAPP: IdentityKind.PHONE}

_RESOLVE_ATTEMPTS = 3


@dataclass(frozen=True)
class IdentityResolution:
    customer: Customer
    identity: Identity
    created: bool


def _active_customer(customer: Customer) -> Customer:
    """Follow ``merged_into`` to the customer that is live now (merges normally move identities)."""
    seen = set()
    while customer.merged_into_id is not None and customer.pk not in seen:
        seen.add(customer.pk)
        customer = Customer.objects.get(pk=customer.merged_into_id)
    return customer


def identity_resolve(
    *,
    kind: str,
    value: str,
    display_name: str = "",
    language: str = "",
    source: str = IdentitySource.INBOUND,
    verified: bool | None = None,
) -> IdentityResolution:
    """Find or create the customer who owns an inbound address.

    Two concurrent calls for the same new address yield one customer: the unique constraint on
    (kind, value) lets exactly one insert win; the loser's customer is rolled back with its
    savepoint and the retry reads the winner's row (READ COMMITTED sees it once committed).
    Raises ``ValidationError`` for an address that does not normalise; one a provider delivered
    (``DELIVERED_SOURCES``) always does unless it is empty.
    """
    if source in DELIVERED_SOURCES:
        normalized = addresses.normalize_delivered(kind, value)
    else:
        normalized = addresses.normalize(kind, value)
    now = timezone.now()
    is_verified = source in PROVEN_SOURCES if verified is None else verified
    sibling_kind = _SIBLING_KINDS.get(kind)
    for _attempt in range(_RESOLVE_ATTEMPTS):
        # The address and its sibling (the same number on the other channel) in one read: a new
        # customer's first message needs both answers, and every message needs the first.
        found = {identity.kind: identity for identity in Identity.objects.select_related("customer").filter(
            kind__in=[kind, sibling_kind] if sibling_kind else [kind], value=normalized)}
        identity = found.get(kind)
        if identity is not None and not identity.verified and is_verified:
            # The address was only claimed (typed into a form) and now proves itself: the claimant
            # may not be its owner, so the owner gets their own record and an agent decides.
            return _detach_claimed(identity, source=source, display_name=display_name, language=language, now=now)
        if identity is not None:
            Identity.objects.filter(pk=identity.pk).update(last_seen_at=now)
            return IdentityResolution(customer=_active_customer(identity.customer), identity=identity, created=False)
        sibling = found.get(sibling_kind)
        owner = _active_customer(sibling.customer) if sibling is not None else None
        try:
            with transaction.atomic():
                created = owner is None
                customer = owner or Customer.objects.create(display_name=display_name[:200], language=language[:16])
                identity = Identity.objects.create(
                    customer=customer, kind=kind, value=normalized, verified=is_verified, source=source, last_seen_at=now
                )
            return IdentityResolution(customer=customer, identity=identity, created=created)
        except IntegrityError:
            continue
    raise RuntimeError(f"identity_resolve({kind}, {normalized}) did not settle after {_RESOLVE_ATTEMPTS} attempts")


def _detach_claimed(identity: Identity, *, source: str, display_name: str, language: str, now) -> IdentityResolution:
    from .suggestions import suggestion_record

    with transaction.atomic():
        locked = Identity.objects.select_for_update().select_related("customer").get(pk=identity.pk)
        if locked.verified:  # a concurrent call already did it
            return IdentityResolution(customer=_active_customer(locked.customer), identity=locked, created=False)
        claimant = _active_customer(locked.customer)
        owner = Customer.objects.create(display_name=display_name[:200], language=language[:16])
        locked.customer = owner
        locked.verified = True
        locked.source = source
        locked.last_seen_at = now
        locked.save(update_fields=["customer", "verified", "source", "last_seen_at"])
        suggestion_record(
            customer=owner, candidate=claimant, reason=f"claimed_{locked.kind}",
            evidence={"kind": locked.kind, "value": locked.value, "claimed_by": claimant.pk,
                      "proven_by": source},
        )
    return IdentityResolution(customer=owner, identity=locked, created=True)


class LinkOutcome(enum.Enum):
    ATTACHED = "attached"  # the address was new: it now belongs to the customer
    ALREADY = "already"  # the customer already had it
    MERGED = "merged"  # proven address of another customer: the two were merged
    SUGGESTED = "suggested"  # claimed address of another customer: a suggestion waits for an agent


def identity_link(*, customer: Customer, kind: str, value: str, source: str, actor=None, evidence: dict | None = None):
    """Attach an address to ``customer``.

    If another customer already owns it, a proven address merges ``customer`` into the owner (the
    owner's record is the one with history), a claimed one records a merge suggestion instead.
    Returns ``(LinkOutcome, customer now holding the address)``.
    """
    from .merge import customer_merge
    from .suggestions import suggestion_record

    normalized = addresses.normalize(kind, value)
    proven = source in PROVEN_SOURCES
    existing = Identity.objects.select_related("customer").filter(kind=kind, value=normalized).first()
    if existing is None:
        try:
            with transaction.atomic():
                Identity.objects.create(
                    customer=customer, kind=kind, value=normalized, verified=proven, source=source,
                    last_seen_at=timezone.now(),
                )
            return LinkOutcome.ATTACHED, customer
        except IntegrityError:
            existing = Identity.objects.select_related("customer").get(kind=kind, value=normalized)
    owner = _active_customer(existing.customer)
    if owner.pk == customer.pk:
        if proven and not existing.verified:
            Identity.objects.filter(pk=existing.pk).update(verified=True, source=source)
        return LinkOutcome.ALREADY, customer
    if proven:
        customer_merge(source=customer, target=owner, actor=actor)
        if not existing.verified:
            Identity.objects.filter(pk=existing.pk).update(verified=True, source=source)
        return LinkOutcome.MERGED, owner
    suggestion_record(
        customer=owner,
        candidate=customer,
        reason=f"claimed_{kind}",
        evidence={"kind": kind, "value": normalized, "source": source, **(evidence or {})},
    )
    return LinkOutcome.SUGGESTED, customer
