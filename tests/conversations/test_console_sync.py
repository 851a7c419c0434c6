"""/console/sync/: what the database holds of an agent's own work, which the console compares with
what it shows after a reconnect and on a timer (a live event lost with no socket dropping is
caught up within a period)."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.models import ConversationStatus, Offer, OfferStatus, Queue

from ..factories import make_agent, make_conversation, make_customer, make_inbox, make_message, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(db):
    return Queue.objects.create(name="Support", slug="support")


def sync(client) -> dict:
    response = client.get(reverse("console:sync"))
    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    return response.json()


def sidebar_signature(client) -> str:
    html = client.get(reverse("console:sidebar")).content.decode()
    return re.search(r'data-sync="([0-9a-f]+)"', html).group(1)


def test_lists_the_agents_own_active_work_with_the_newest_sequence_numbers(client, queue):
    alice, bob = make_agent("alice"), make_agent("bob")
    inbox = make_inbox("sms")
    mine = make_conversation(make_customer("Aiko"), inbox, queue=queue, assignee=alice)
    make_message(mine, "one")
    make_message(mine, "two")
    make_conversation(make_customer("Resolved"), inbox, queue=queue, assignee=alice, status=ConversationStatus.RESOLVED)
    theirs = make_conversation(make_customer("Bob's"), inbox, queue=queue, assignee=bob)
    make_message(theirs, "not for alice")
    offered = make_conversation(make_customer("Offered"), inbox, queue=queue)
    offer = Offer.objects.create(conversation=offered, agent=alice, queue=queue, channel="sms", step="queue",
                                 status=OfferStatus.PENDING, expires_at=timezone.now() + timedelta(minutes=2))
    Offer.objects.create(conversation=theirs, agent=alice, queue=queue, channel="sms", step="queue",
                         status=OfferStatus.REJECTED, expires_at=timezone.now() + timedelta(minutes=2))
    client.force_login(alice.user)

    data = sync(client)
    mine.refresh_from_db()
    assert data["conversations"] == [{"id": mine.pk, "customer": mine.customer_id, "last_seq": 2}]
    assert mine.last_seq == 2
    assert data["offers"] == [{"id": offer.pk, "conversation": offered.pk}]
    # The work list carries the same digest: a page whose list is current sees no difference.
    assert data["signature"] == sidebar_signature(client)


def test_the_signature_changes_with_a_new_entry_a_new_assignment_and_a_new_offer(client, queue):
    alice = make_agent("alice")
    inbox = make_inbox("sms")
    mine = make_conversation(make_customer("Aiko"), inbox, queue=queue, assignee=alice)
    make_message(mine, "one")
    client.force_login(alice.user)
    signatures = [sync(client)["signature"]]

    make_message(mine, "stored, its event lost")
    signatures.append(sync(client)["signature"])
    other = make_conversation(make_customer("Kenji"), inbox, queue=queue, assignee=alice)
    signatures.append(sync(client)["signature"])
    Offer.objects.create(conversation=make_conversation(make_customer("Offered"), inbox, queue=queue), agent=alice,
                         queue=queue, channel="sms", step="queue", status=OfferStatus.PENDING,
                         expires_at=timezone.now() + timedelta(minutes=2))
    signatures.append(sync(client)["signature"])
    assert len(set(signatures)) == 4, signatures
    assert signatures[-1] == sync(client)["signature"] == sidebar_signature(client)
    assert {c["id"] for c in sync(client)["conversations"]} == {mine.pk, other.pk}


def test_fixed_query_count(client, queue):
    alice = make_agent("alice")
    inbox = make_inbox("sms")
    client.force_login(alice.user)
    make_conversation(make_customer(), inbox, queue=queue, assignee=alice)
    sync(client)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            sync(client)
        return len(queries)

    one = count()
    for _ in range(20):
        make_message(make_conversation(make_customer(), inbox, queue=queue, assignee=alice))
    assert count() == one


def test_a_supervisor_without_an_agent_profile_gets_an_empty_list_and_agents_only_their_own(client, queue):
    sam = make_user("sam", role="supervisor", is_staff=True)
    make_conversation(make_customer(), make_inbox("sms"), queue=queue, assignee=make_agent("alice"))
    client.force_login(sam)
    assert sync(client)["conversations"] == []


def test_refused_to_the_signed_out_and_to_customers(client):
    response = client.get(reverse("console:sync"))
    assert response.status_code in (302, 401, 403)
    client.force_login(make_user("visitor", role=None))
    assert client.get(reverse("console:sync")).status_code in (302, 403)
