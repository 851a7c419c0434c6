"""The softphone panel is part of the console page once (not of the fragments the page swaps in),
for agents only; the Call button sits beside a customer's phone number."""

import pytest
from django.urls import reverse

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_the_workspace_has_one_softphone_and_its_fragments_none(client, agent, customer, offered_call):
    client.login(username="alice", password=PASSWORD)
    page = client.get(reverse("console:home")).content.decode()
    assert page.count('id="softphone"') == 1 and "js/softphone.js" in page
    for url in (reverse("console:home"), reverse("console:conversation", args=[offered_call.pk])):
        fragment = client.get(url, {"fragment": "panes"}).content.decode()
        assert 'id="softphone"' not in fragment and 'id="workspace"' not in fragment
    conversation_page = client.get(reverse("console:conversation", args=[offered_call.pk])).content.decode()
    assert reverse("softphone:click-to-call", args=[customer.pk]) in conversation_page


def test_a_supervisor_without_an_agent_profile_has_no_softphone(admin_client):
    page = admin_client.get(reverse("console:home")).content.decode()
    assert 'id="softphone"' not in page
