"""Routing surfaces: /api/v1/queues/, /api/v1/agents/, presence, offers, routing explained, socket."""

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from conversations.models import AgentSkill, Offer, PresenceState, Queue, Skill
from conversations.routing.decisions import route_conversation

from ..factories import make_agent, make_conversation, make_customer, make_inbox
from .console_socket_helpers import _connect, _session_cookie

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(db):
    available = PresenceState.objects.create(name="Available", is_available=True)
    offline = PresenceState.objects.create(name="Offline", is_offline=True)
    skill = Skill.objects.create(name="Support", slug="support")
    queue = Queue.objects.create(name="Support", slug="support", is_default=True)
    queue.required_skills.add(skill)
    alice = make_agent("alice", presence=available)
    AgentSkill.objects.create(agent=alice, skill=skill)
    bob = make_agent("bob", presence=offline)
    return {"available": available, "offline": offline, "queue": queue, "alice": alice, "bob": bob, "skill": skill}


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_queue_list_has_live_counts(setup, supervisor):
    queue, alice = setup["queue"], setup["alice"]
    offered = make_conversation(make_customer(), make_inbox("sms"))
    route_conversation(conversation_id=offered.pk)
    make_conversation(make_customer(), make_inbox("sms"), queue=queue)
    [row] = api(supervisor.user).get("/api/v1/queues/").json()
    assert (row["slug"], row["waiting"], row["offered"], row["assigned"]) == ("support", 2, 1, 0)
    assert row["required_skills"] == ["support"] and row["required_skill_levels"] == {"support": 1}
    assert Offer.objects.get().agent == alice


def test_agent_list_shows_presence_and_load(setup, supervisor):
    rows = {row["display_name"]: row for row in api(supervisor.user).get("/api/v1/agents/").json()}
    assert rows["Alice"]["presence"]["available"] is True and rows["Bob"]["presence"]["name"] == "Offline"
    assert rows["Alice"]["skills"] == {"support": 1}


def test_agent_sets_presence_and_gets_waiting_work(setup, django_capture_on_commit_callbacks):
    bob = setup["bob"]
    AgentSkill.objects.create(agent=bob, skill=setup["skill"])
    client = api(bob.user)
    choices = client.get("/api/v1/agents/me/presence/").json()
    assert {c["name"] for c in choices["choices"]} == {"Available", "Offline"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/agents/me/presence/", {"presence": setup["available"].pk}, format="json")
    assert response.status_code == 200 and response.json()["available"] is True
    bob.refresh_from_db()
    assert bob.presence == setup["available"]
    assert client.post("/api/v1/agents/me/presence/", {"presence": 999}, format="json").status_code == 400


def test_offer_accept_and_reject_only_by_its_agent(setup, stranger):
    alice, bob = setup["alice"], setup["bob"]
    conversation = make_conversation(make_customer(), make_inbox("sms"))
    offer = route_conversation(conversation_id=conversation.pk).offer
    assert api(bob.user).post(f"/api/v1/offers/{offer.pk}/accept/").status_code == 404
    assert api(stranger).post(f"/api/v1/offers/{offer.pk}/accept/").status_code == 403
    response = api(alice.user).post(f"/api/v1/offers/{offer.pk}/accept/")
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    again = api(alice.user).post(f"/api/v1/offers/{offer.pk}/reject/")
    assert again.status_code == 400 and "no longer open" in again.json()["detail"]


def test_routing_explained_is_authorised(setup, supervisor, stranger):
    alice, bob = setup["alice"], setup["bob"]
    conversation = make_conversation(make_customer(), make_inbox("sms"))
    route_conversation(conversation_id=conversation.pk)
    url = f"/api/v1/conversations/{conversation.pk}/routing/"
    body = api(supervisor.user).get(url).json()
    assert body["queue"] == "support" and body["offers"][0]["agent"] == alice.pk
    assert body["offers"][0]["explanation"]["rule"] == "default queue"
    assert body["queue_reason"] == "default queue"
    assert body["position"]["position"] == 1
    assert api(alice.user).get(url).status_code == 200
    assert api(bob.user).get(url).status_code == 404  # no skill, not offered, not assigned
    assert api(stranger).get(url).status_code in (403, 404)


@pytest.mark.django_db(transaction=True)
async def test_presence_and_offer_accept_over_the_console_socket(setup):
    alice = setup["alice"]
    conversation = await database_sync_to_async(make_conversation)(
        await database_sync_to_async(make_customer)(), await database_sync_to_async(make_inbox)("sms"))
    offer = (await database_sync_to_async(route_conversation)(conversation_id=conversation.pk)).offer
    cookie = await database_sync_to_async(_session_cookie)(alice.user)
    communicator, connected, _ = await _connect(cookie)
    try:
        assert connected
        await communicator.receive_json_from()
        await communicator.send_json_to({"type": "offer.accept", "offer": offer.pk})
        reply = await communicator.receive_json_from(timeout=5)
        while reply.get("type") != "ack":
            reply = await communicator.receive_json_from(timeout=5)
        assert reply == {"type": "ack", "for": "offer.accept", "offer": offer.pk, "status": "accepted"}
        await communicator.send_json_to({"type": "offer.accept", "offer": 424242})
        reply = await communicator.receive_json_from(timeout=5)
        while reply.get("type") not in ("error",):
            reply = await communicator.receive_json_from(timeout=5)
        assert reply["code"] == 404
        await communicator.send_json_to({"type": "presence.set", "presence": setup["offline"].pk})
        reply = await communicator.receive_json_from(timeout=5)
        while reply.get("type") != "ack":
            reply = await communicator.receive_json_from(timeout=5)
        assert reply["presence"] == setup["offline"].pk
    finally:
        await communicator.disconnect()
