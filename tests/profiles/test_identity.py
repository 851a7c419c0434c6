import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from profiles.models import Customer, Identity, IdentityKind, IdentitySource, MergeSuggestion
from profiles.services import LinkOutcome, identity_link, identity_resolve

from ..factories import make_customer, make_identity

pytestmark = pytest.mark.django_db


def test_resolve_creates_one_customer_for_every_form_of_a_number():
    first = identity_resolve(kind="phone", value="090-1234-5678", display_name="Hanako")
    assert first.created
    assert first.identity.value == "+819012345678"
    for form in ("０９０－１２３４－５６７８", "+81 90 1234 5678"):
        again = identity_resolve(kind="phone", value=form)
        assert not again.created
        assert again.customer.pk == first.customer.pk
    assert Customer.objects.count() == 1


def test_inbound_identity_is_verified_and_records_how_it_was_learned():
    result = identity_resolve(kind="email", value="Taro@Example.JP")
    assert result.identity.verified is True
    assert result.identity.source == IdentitySource.INBOUND
    claimed = identity_resolve(kind="email", value="x@example.jp", source=IdentitySource.CLAIMED)
    assert claimed.identity.verified is False


def test_whatsapp_joins_the_customer_of_the_same_phone_number():
    phone = identity_resolve(kind="phone", value="090-1234-5678")
    whatsapp = identity_resolve(kind="whatsapp", value="whatsapp:+819012345678")
    assert whatsapp.customer.pk == phone.customer.pk
    assert not whatsapp.created
    assert set(phone.customer.identities.values_list("kind", flat=True)) == {"phone", "whatsapp"}


def test_invalid_address_is_a_validation_error_and_creates_nothing():
    # Typed (an agent, an import): validated strictly. Delivered by a provider: only a missing
    # address is refused (issue 21 §10; the lenient cases are in test_addresses and the ingest).
    with pytest.raises(ValidationError):
        identity_resolve(kind="phone", value="not a number", source="agent")
    with pytest.raises(ValidationError):
        identity_resolve(kind="phone", value="+819007397108", source="import")
    with pytest.raises(ValidationError):
        identity_resolve(kind="phone", value="  ")
    assert Customer.objects.count() == 0


def test_resolve_follows_a_merged_customer_to_the_live_one():
    target = make_customer("Target")
    source = make_customer("Source", merged_into=target)
    make_identity(source, IdentityKind.EMAIL, "old@example.jp", verified=True)
    assert identity_resolve(kind="email", value="old@example.jp").customer == target


def test_claimed_identity_of_another_customer_only_suggests():
    owner = make_customer("Owner")
    make_identity(owner, IdentityKind.EMAIL, "owner@example.jp", verified=True)
    visitor = identity_resolve(kind="web_visitor", value="visitor-token-1").customer
    outcome, holder = identity_link(
        customer=visitor, kind="email", value="OWNER@example.jp", source=IdentitySource.CLAIMED,
        evidence={"form": "pre-chat"},
    )
    assert outcome is LinkOutcome.SUGGESTED
    assert holder == visitor
    assert Identity.objects.get(value="owner@example.jp").customer == owner  # never moved
    suggestion = MergeSuggestion.objects.get()
    assert (suggestion.customer, suggestion.candidate) == (owner, visitor)
    assert suggestion.evidence["value"] == "owner@example.jp"
    assert suggestion.evidence["form"] == "pre-chat"
    visitor.refresh_from_db()
    assert visitor.merged_into is None


def test_proven_identity_of_another_customer_links_automatically():
    owner = make_customer("Owner")
    make_identity(owner, IdentityKind.EXTERNAL_ID, "shop-user-42", verified=True)
    visitor = identity_resolve(kind="web_visitor", value="visitor-token-2").customer
    outcome, holder = identity_link(customer=visitor, kind="external_id", value="shop-user-42", source=IdentitySource.SIGNED)
    assert outcome is LinkOutcome.MERGED
    assert holder == owner
    visitor.refresh_from_db()
    assert visitor.merged_into == owner
    assert Identity.objects.get(value="visitor-token-2").customer == owner


def test_link_new_address_attaches_it():
    customer = make_customer()
    outcome, _ = identity_link(customer=customer, kind="phone", value="080-1111-2222", source=IdentitySource.AGENT)
    assert outcome is LinkOutcome.ATTACHED
    assert customer.identities.get().value == "+818011112222"
    outcome, _ = identity_link(customer=customer, kind="phone", value="+81 80 1111 2222", source=IdentitySource.AGENT)
    assert outcome is LinkOutcome.ALREADY


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_concurrent_resolve_of_a_new_address_yields_one_customer():
    """Many threads, each on its own PostgreSQL connection, resolve the same new number at once."""
    assert connection.vendor == "postgresql"
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results, errors = [], []

    def resolve():
        from django.db import connections

        try:
            barrier.wait()
            results.append(identity_resolve(kind="phone", value="090-9999-0000").customer.pk)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    for _round in range(5):
        threads = [threading.Thread(target=resolve) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(set(results)) == 1
        assert Customer.objects.count() == 1
        assert Identity.objects.filter(value="+819099990000").count() == 1


def test_a_claimed_address_that_later_proves_itself_gets_its_own_customer_and_a_suggestion():
    visitor = identity_resolve(kind="web_visitor", value="visitor-token-3").customer
    outcome, _ = identity_link(customer=visitor, kind="email", value="victim@example.jp", source=IdentitySource.CLAIMED)
    assert outcome is LinkOutcome.ATTACHED
    assert Identity.objects.get(value="victim@example.jp").verified is False

    real = identity_resolve(kind="email", value="victim@example.jp", display_name="The real owner")
    assert real.created and real.customer != visitor
    identity = Identity.objects.get(value="victim@example.jp")
    assert identity.customer == real.customer and identity.verified
    suggestion = MergeSuggestion.objects.get()
    assert (suggestion.customer, suggestion.candidate) == (real.customer, visitor)
    # From now on the address resolves to its owner.
    assert identity_resolve(kind="email", value="victim@example.jp").customer == real.customer
