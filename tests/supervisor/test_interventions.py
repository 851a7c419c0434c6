"""The wallboard page and the supervisors' interventions: who may use them, and that each is
recorded on the conversation's timeline with who did it."""

import pytest
from django.test import Client
from django.utils import timezone

from conversations.models import Agent, Channel, EventType, Message, MessageKind

from ..factories import make_agent, make_conversation, make_customer, make_inbox
from .conftest import desk_agent

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture
def carol(desk):
    return make_agent("carol", role="supervisor", display_name="Carol", presence=desk.available)


@pytest.fixture
def waiting(desk):
    return make_conversation(make_customer("Waiting <script>x</script>"), make_inbox(Channel.SMS), queue=desk.queue,
                             queued_at=timezone.now())


def _csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _token(client: Client, url: str = "/supervisor/") -> str:
    client.get(url)
    return client.cookies["csrftoken"].value


def test_the_wallboard_is_for_supervisors(desk, carol, stranger, client):
    alice = desk_agent(desk, "alice")
    assert client.get("/supervisor/").status_code == 302  # anonymous: to the login page
    assert "/accounts/login/" in client.get("/supervisor/")["Location"]
    client.force_login(alice.user)
    assert client.get("/supervisor/").status_code == 403
    client.force_login(stranger)
    assert client.get("/supervisor/").status_code == 403
    client.force_login(carol.user)
    assert client.get("/supervisor/").status_code == 200


def test_the_wallboard_page_shows_the_board_escaped_in_english_and_japanese(desk, carol, waiting, client):
    client.force_login(carol.user)
    page = client.get("/supervisor/").content.decode()
    assert "Waiting &lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert "Wallboard" in page and 'data-socket="/ws/supervisor/?lang=en"' in page
    client.cookies["django_language"] = "ja"
    page = client.get("/supervisor/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "ウォールボード" in page and "待機中" in page


def test_assign_is_recorded_on_the_timeline_with_who_did_it(desk, carol, waiting):
    alice = desk_agent(desk, "alice")
    client = _csrf_client(carol.user)
    response = client.post(f"/supervisor/conversations/{waiting.pk}/assign/",
                           {"agent": alice.pk, "note": "VIP", "csrfmiddlewaretoken": _token(client)}, **JSON)
    assert response.status_code == 200, response.content
    waiting.refresh_from_db()
    assert waiting.assignee_id == alice.pk
    event = Message.objects.get(conversation=waiting, event_type=EventType.ASSIGNED)
    assert event.author_agent_id == carol.pk and event.event_data.get("note") == "VIP"


def test_transfer_to_a_queue_is_recorded_with_who_did_it(desk, carol, waiting):
    alice = desk_agent(desk, "alice")
    waiting.assignee, waiting.assigned_at = alice, timezone.now()
    waiting.save()
    client = _csrf_client(carol.user)
    response = client.post(f"/supervisor/conversations/{waiting.pk}/transfer/",
                           {"queue": desk.sales.pk, "note": "sales question", "csrfmiddlewaretoken": _token(client)},
                           **JSON)
    assert response.status_code == 200, response.content
    waiting.refresh_from_db()
    assert (waiting.queue_id, waiting.assignee_id) == (desk.sales.pk, None)
    event = Message.objects.get(conversation=waiting, event_type=EventType.TRANSFERRED)
    assert event.author_agent_id == carol.pk and event.event_data["to_queue"] == desk.sales.pk


def test_a_private_note_to_the_agent(desk, carol, waiting):
    client = _csrf_client(carol.user)
    response = client.post(f"/supervisor/conversations/{waiting.pk}/note/",
                           {"text": "Offer the refund.", "csrfmiddlewaretoken": _token(client)}, **JSON)
    assert response.status_code == 200, response.content
    note = Message.objects.get(conversation=waiting, kind=MessageKind.NOTE)
    assert (note.text, note.author_agent_id) == ("Offer the refund.", carol.pk)


def test_presence_change_by_a_supervisor(desk, carol):
    alice = desk_agent(desk, "alice")
    client = _csrf_client(carol.user)
    response = client.post(f"/supervisor/agents/{alice.pk}/presence/",
                           {"presence": desk.offline.pk, "csrfmiddlewaretoken": _token(client)}, **JSON)
    assert response.status_code == 200, response.content
    assert Agent.objects.get(pk=alice.pk).presence_id == desk.offline.pk
    # Recorded with the supervisor as its author, for the agent status timeline.
    from supervisor.facts.models import AgentPresenceChange

    change = AgentPresenceChange.objects.filter(agent=alice).latest("changed_at")
    assert (change.name, change.source, change.reason, change.changed_by_id) == ("Offline", "supervisor",
                                                                                 "supervisor", carol.pk)


def test_agents_get_403_and_change_nothing(desk, waiting):
    alice = desk_agent(desk, "alice")
    bob = desk_agent(desk, "bob")
    client = _csrf_client(alice.user)
    token = _token(client, "/console/")
    for url, data in [(f"/supervisor/conversations/{waiting.pk}/assign/", {"agent": alice.pk}),
                      (f"/supervisor/conversations/{waiting.pk}/transfer/", {"queue": desk.sales.pk}),
                      (f"/supervisor/conversations/{waiting.pk}/note/", {"text": "hi"}),
                      (f"/supervisor/agents/{bob.pk}/presence/", {"presence": desk.offline.pk})]:
        assert client.post(url, {**data, "csrfmiddlewaretoken": token}, **JSON).status_code == 403, url
    waiting.refresh_from_db()
    assert waiting.assignee_id is None and waiting.queue_id == desk.queue.pk
    assert not Message.objects.filter(conversation=waiting).exists()
    assert Agent.objects.get(pk=bob.pk).presence_id == desk.available.pk


def test_without_csrf_nothing_happens(desk, carol, waiting):
    alice = desk_agent(desk, "alice")
    client = _csrf_client(carol.user)
    response = client.post(f"/supervisor/conversations/{waiting.pk}/assign/", {"agent": alice.pk}, **JSON)
    assert response.status_code == 403
    waiting.refresh_from_db()
    assert waiting.assignee_id is None


def test_anonymous_fetch_gets_401_and_get_is_refused(desk, carol, waiting, client):
    response = client.post(f"/supervisor/conversations/{waiting.pk}/note/", {"text": "x"}, **JSON)
    assert response.status_code in (302, 401)
    client.force_login(carol.user)
    assert client.get(f"/supervisor/conversations/{waiting.pk}/note/").status_code == 405


def test_a_refusal_comes_back_in_words(desk, carol, waiting):
    client = _csrf_client(carol.user)
    token = _token(client)
    response = client.post(f"/supervisor/conversations/{waiting.pk}/assign/", {"agent": "", "csrfmiddlewaretoken": token},
                           **JSON)
    assert response.status_code == 400 and response.json()["error"]
    response = client.post(f"/supervisor/conversations/{waiting.pk}/note/", {"text": " ", "csrfmiddlewaretoken": token},
                           **JSON)
    assert response.status_code == 400 and response.json()["error"]


def test_an_admin_without_an_agent_profile_is_told_why_nothing_happened(desk, admin_user, waiting):
    """The timeline names who acted by their agent profile: without one, nothing is done."""
    client = _csrf_client(admin_user)
    response = client.post(f"/supervisor/conversations/{waiting.pk}/note/",
                           {"text": "hi", "csrfmiddlewaretoken": _token(client)}, **JSON)
    assert response.status_code == 403 and "agent profile" in response.json()["error"]
    assert not Message.objects.filter(conversation=waiting).exists()


def test_without_script_an_intervention_redirects_back_with_its_outcome(desk, carol, waiting):
    client = _csrf_client(carol.user)
    response = client.post(f"/supervisor/conversations/{waiting.pk}/note/",
                           {"text": "plain form", "csrfmiddlewaretoken": _token(client)})
    assert response.status_code == 302 and response["Location"] == "/supervisor/"
    assert "Note added." in client.get("/supervisor/").content.decode()


def test_watching_a_conversation_is_read_only_until_the_supervisor_takes_part(desk, carol, waiting):
    """The wallboard's "watch live" opens the console without the composer and the actions; its
    "take part" link is the ordinary page, with both."""
    client = _csrf_client(carol.user)
    board = client.get("/supervisor/").content.decode()
    assert 'data-href-template="/console/conversations/0/?watch=1"' in board
    watching = client.get(f"/console/conversations/{waiting.pk}/?watch=1").content.decode()
    assert 'id="composer"' not in watching and 'data-open-dialog="resolve-dialog"' not in watching
    assert "Watching live, read-only." in watching and f'href="/console/conversations/{waiting.pk}/"' in watching
    panes = client.get(f"/console/conversations/{waiting.pk}/?watch=1&fragment=panes").content.decode()
    assert 'id="composer"' not in panes
    taking_part = client.get(f"/console/conversations/{waiting.pk}/").content.decode()
    assert 'id="composer"' in taking_part and 'data-open-dialog="resolve-dialog"' in taking_part
