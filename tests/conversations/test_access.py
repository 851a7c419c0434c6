"""Who may see a conversation: one rule (conversations.selectors.access_conversation) behind every
door — console pages and fragments, console actions, the REST API and the console socket.

Only a pending offer, the assignment, serving a queue that allows picking, or the supervisor role
grants access. An agent who rejected an offer or let it time out, after the conversation went to a
colleague, sees nothing of it any more (issue 21, defect 1); a transfer is the assignee's or a
supervisor's, and a transfer to oneself is a pick with pick's rules (defect 2)."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from conversations.models import (
    AgentSkill,
    Conversation,
    ConversationStatus,
    EventType,
    Message,
    MessageKind,
    Offer,
    OfferStatus,
    Queue,
    Skill,
)
from conversations.services.agent_actions import note_add
from conversations.routing.assignment import conversation_assign
from conversations.routing.offers import offer_reject
from conversations.routing.presence import offers_expire

from ..factories import make_agent, make_conversation, make_customer, make_inbox, make_message
from .test_console_live import _pong, _socket, _until

pytestmark = pytest.mark.django_db

# Every console action on a conversation, with a form that would do something if it were let through.
ACTIONS = [
    ("reply", {"text": "I can help"}),
    ("note", {"text": "internal"}),
    ("resolve", {}),
    ("snooze", {"preset": "1h"}),
    ("reopen", {}),
    ("transfer", {"target": "queue:{queue}", "note": "x"}),
    ("transfer", {"target": "agent:{me}", "note": "mine now"}),
    ("pick", {}),
    ("assign", {"agent": "{me}"}),
]


def offer(conversation, agent, *, expires_in=timedelta(minutes=2), status=OfferStatus.PENDING) -> Offer:
    return Offer.objects.create(conversation=conversation, agent=agent, queue=conversation.queue, channel="sms",
                                step="queue", status=status, expires_at=timezone.now() + expires_in)


def post(client, name: str, conversation, agent, data: dict):
    form = {key: value.format(queue=conversation.queue_id, me=agent.pk if agent else "") for key, value in data.items()}
    return client.post(reverse(f"console:{name}", args=[conversation.pk]), form, HTTP_ACCEPT="application/json")


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def snapshot(conversation) -> tuple:
    row = Conversation.objects.get(pk=conversation.pk)
    return (row.assignee_id, row.status, row.queue_id, row.last_seq,
            Message.objects.filter(conversation=conversation).count())


@pytest.fixture
def world(db):
    """A conversation in a queue that does not allow picking: offered to Alice (rejected), then to
    Dora (timed out), then assigned to Bob. Erin serves another queue; Frank has a pending offer
    of another conversation; Gina serves a queue that allows picking; Carol is a supervisor."""
    no_pick = Queue.objects.create(name="Billing", slug="billing", allow_pick=False)
    skill = Skill.objects.create(name="Billing", slug="billing")
    no_pick.required_skills.add(skill)
    pickable = Queue.objects.create(name="Support", slug="support", allow_pick=True)
    agents = {name: make_agent(name) for name in ("alice", "bob", "dora", "erin", "frank", "gina")}
    for name in ("alice", "bob", "dora", "frank"):
        AgentSkill.objects.create(agent=agents[name], skill=skill)
    agents["carol"] = make_agent("carol", role="supervisor")
    inbox = make_inbox("sms")
    conversation = make_conversation(make_customer("Hanako"), inbox, queue=no_pick, queued_at=timezone.now())
    make_message(conversation, "where is my refund?")

    offer_reject(offer_id=offer(conversation, agents["alice"]).pk, agent=agents["alice"])
    dora_offer = offer(conversation, agents["dora"])
    Offer.objects.filter(pk=dora_offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert offers_expire() == 1
    conversation_assign(conversation_id=conversation.pk, agent=agents["bob"], by=agents["carol"])
    assert set(Offer.objects.filter(conversation=conversation).values_list("agent__user__username", "status")) == {
        ("alice", OfferStatus.REJECTED), ("dora", OfferStatus.TIMEOUT)}

    offered = make_conversation(make_customer("Taro"), inbox, queue=no_pick, queued_at=timezone.now())
    offer(offered, agents["frank"])
    waiting = make_conversation(make_customer("Jiro"), inbox, queue=pickable, queued_at=timezone.now())
    return {"agents": agents, "taken": conversation, "offered": offered, "waiting": waiting}


@pytest.mark.parametrize("who", ["alice", "dora", "erin"])
def test_rejected_expired_and_stranger_agents_see_nothing_of_a_colleague_s_conversation(client, world, who):
    agent, conversation = world["agents"][who], world["taken"]
    client.force_login(agent.user)
    page = reverse("console:conversation", args=[conversation.pk])
    assert client.get(page).status_code == 404
    assert client.get(page, {"fragment": "panes"}).status_code == 404
    assert client.get(reverse("console:canned"), {"conversation": conversation.pk}).status_code == 404
    before = snapshot(conversation)
    for name, data in ACTIONS:
        response = post(client, name, conversation, agent, data)
        assert response.status_code == 404, (name, data, response.status_code)
    assert snapshot(conversation) == before  # nothing done, nothing written
    assert api(agent.user).get(f"/api/v1/conversations/{conversation.pk}/routing/").status_code == 404


def test_an_offer_past_its_expiry_grants_nothing_even_before_the_tick_closes_it(client, world):
    agent, conversation = world["agents"]["frank"], world["offered"]
    client.force_login(agent.user)
    page = reverse("console:conversation", args=[conversation.pk])
    assert client.get(page).status_code == 200
    Offer.objects.filter(conversation=conversation).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Offer.objects.get(conversation=conversation).status == OfferStatus.PENDING
    assert client.get(page).status_code == 404


@pytest.mark.parametrize("who, which", [("frank", "offered"), ("bob", "taken"), ("gina", "waiting"),
                                        ("carol", "taken"), ("carol", "offered"), ("carol", "waiting")])
def test_pending_offer_assignee_picker_and_supervisor_see_it(client, world, who, which):
    agent, conversation = world["agents"][who], world[which]
    client.force_login(agent.user)
    assert client.get(reverse("console:conversation", args=[conversation.pk])).status_code == 200
    assert client.get(reverse("console:canned"), {"conversation": conversation.pk}).status_code == 200
    assert api(agent.user).get(f"/api/v1/conversations/{conversation.pk}/routing/").status_code == 200
    response = post(client, "note", conversation, agent, {"text": "looking at it"})
    assert response.status_code == 200 and response.json()["ok"] is True


def test_a_picker_loses_the_waiting_conversation_once_a_colleague_has_it(client, world):
    gina, conversation = world["agents"]["gina"], world["waiting"]
    client.force_login(gina.user)
    page = reverse("console:conversation", args=[conversation.pk])
    assert client.get(page).status_code == 200
    conversation_assign(conversation_id=conversation.pk, agent=world["agents"]["bob"], by=world["agents"]["carol"])
    assert client.get(page).status_code == 404


# --- transfer ----------------------------------------------------------------------------------------------

def test_a_transfer_to_oneself_is_a_pick_refused_where_the_queue_forbids_picking(client, world):
    frank, conversation = world["agents"]["frank"], world["offered"]  # he sees it: his offer is pending
    client.force_login(frank.user)
    picked = post(client, "pick", conversation, frank, {})
    transferred = post(client, "transfer", conversation, frank, {"target": "agent:{me}", "note": "mine"})
    assert picked.status_code == transferred.status_code == 400
    assert transferred.json() == picked.json() == {"error": "This queue does not allow picking."}
    conversation.refresh_from_db()
    assert conversation.assignee_id is None
    assert Offer.objects.get(conversation=conversation).status == OfferStatus.PENDING
    assert not Message.objects.filter(conversation=conversation, kind=MessageKind.EVENT,
                                      event_type__in=[EventType.ASSIGNED, EventType.TRANSFERRED]).exists()


def test_a_transfer_to_oneself_where_picking_is_allowed_is_a_pick(client, world):
    gina, conversation = world["agents"]["gina"], world["waiting"]
    client.force_login(gina.user)
    response = post(client, "transfer", conversation, gina, {"target": "agent:{me}", "note": ""})
    assert response.status_code == 200 and response.json() == {"ok": True, "conversation": conversation.pk}
    conversation.refresh_from_db()
    assert conversation.assignee == gina
    (assigned,) = Message.objects.filter(conversation=conversation, event_type=EventType.ASSIGNED)
    assert assigned.event_data["via"] == "pick"


def test_only_the_assignee_or_a_supervisor_transfers(client, world):
    agents, waiting, offered = world["agents"], world["waiting"], world["offered"]
    refusal = {"error": "Only the agent who has this conversation, or a supervisor, may transfer it."}
    # Gina may see the waiting conversation (she could pick it) and Frank his offered one, but
    # neither has it: they may not hand it to someone else, nor back to a queue.
    for agent, conversation in ((agents["gina"], waiting), (agents["frank"], offered)):
        client.force_login(agent.user)
        before = snapshot(conversation)
        for target in (f"agent:{agents['erin'].pk}", f"queue:{conversation.queue_id}"):
            response = post(client, "transfer", conversation, agent, {"target": target, "note": "x"})
            assert response.status_code == 403 and response.json() == refusal
        assert snapshot(conversation) == before
    # The assignee does.
    conversation_assign(conversation_id=waiting.pk, agent=agents["gina"], by=agents["carol"])
    client.force_login(agents["gina"].user)
    response = post(client, "transfer", waiting, agents["gina"], {"target": f"agent:{agents['bob'].pk}", "note": "x"})
    assert response.status_code == 200
    assert Conversation.objects.get(pk=waiting.pk).assignee == agents["bob"]
    # A supervisor does, whoever has it (and a waiting one too).
    client.force_login(agents["carol"].user)
    response = post(client, "transfer", waiting, agents["carol"], {"target": f"agent:{agents['erin'].pk}", "note": ""})
    assert response.status_code == 200
    assert Conversation.objects.get(pk=waiting.pk).assignee == agents["erin"]
    response = post(client, "transfer", offered, agents["carol"], {"target": f"agent:{agents['erin'].pk}", "note": ""})
    assert response.status_code == 200
    offered.refresh_from_db()
    assert offered.assignee == agents["erin"] and offered.status == ConversationStatus.OPEN


# --- the console socket -----------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["alice", "dora", "erin"])
async def test_the_socket_refuses_to_watch_for_the_rejected_expired_and_stranger_agents(world, who):
    agent, conversation = world["agents"][who], world["taken"]
    socket = await _socket(agent.user)
    try:
        await socket.send_json_to({"type": "watch", "conversation": conversation.pk})
        frame = await _until(socket, lambda f: f.get("for") == "watch")
        assert frame == {"type": "error", "code": 404, "reason": "no such conversation", "for": "watch"}
        await socket.send_json_to({"type": "typing", "conversation": conversation.pk, "on": True})
        await database_sync_to_async(note_add)(conversation=conversation, agent=world["agents"]["bob"], text="hi")
        assert [f for f in await _pong(socket) if f.get("conversation") == conversation.pk] == []
    finally:
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who, which", [("frank", "offered"), ("bob", "taken"), ("gina", "waiting"),
                                        ("carol", "taken")])
async def test_the_socket_lets_the_offered_agent_assignee_picker_and_supervisor_watch(world, who, which):
    agent, conversation = world["agents"][who], world[which]
    socket = await _socket(agent.user)
    try:
        await socket.send_json_to({"type": "watch", "conversation": conversation.pk})
        assert await _until(socket, lambda f: f.get("for") == "watch") == {
            "type": "ack", "for": "watch", "conversation": conversation.pk}
        helper = await database_sync_to_async(make_agent)("helper")
        await database_sync_to_async(note_add)(conversation=conversation, agent=helper, text="hi")
        frame = await _until(socket, lambda f: f["type"] == "message.created")
        assert frame["conversation"] == conversation.pk
    finally:
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_agent_who_rejects_the_offer_they_watch_stops_hearing_the_conversation(world):
    """Watching was allowed by the pending offer; once she turns it down and a colleague has it,
    nothing of the conversation reaches her socket any more (neither messages, nor typing, nor who
    is viewing), and she is told once."""
    frank, carol, conversation = world["agents"]["frank"], world["agents"]["carol"], world["offered"]
    pending = await database_sync_to_async(Offer.objects.get)(conversation=conversation)
    socket = await _socket(frank.user)
    try:
        await socket.send_json_to({"type": "watch", "conversation": conversation.pk})
        await _until(socket, lambda f: f.get("for") == "watch" and f["type"] == "ack")
        await database_sync_to_async(offer_reject)(offer_id=pending.pk, agent=frank)
        ended = await _until(socket, lambda f: f["type"] == "watch.ended")
        assert ended["conversation"] == conversation.pk and "no longer open to you" in ended["message"]
        await database_sync_to_async(conversation_assign)(conversation_id=conversation.pk,
                                                          agent=world["agents"]["bob"], by=carol)
        await database_sync_to_async(note_add)(conversation=conversation, agent=carol, text="secret")
        supervisor_socket = await _socket(carol.user)
        try:  # someone else arriving to view, or typing, is not relayed to Frank either
            await supervisor_socket.send_json_to({"type": "watch", "conversation": conversation.pk})
            await _until(supervisor_socket, lambda f: f.get("for") == "watch")
            await supervisor_socket.send_json_to({"type": "typing", "conversation": conversation.pk, "on": True})
            await _pong(supervisor_socket)
        finally:
            await supervisor_socket.disconnect()
        leaked = [f for f in await _pong(socket)
                  if f.get("conversation") == conversation.pk and f["type"] in ("message.created", "typing", "viewer")]
        assert leaked == []
        # And typing into it is refused.
        await socket.send_json_to({"type": "typing", "conversation": conversation.pk, "on": True})
        assert [f for f in await _pong(socket) if f["type"] in ("typing", "viewer")] == []
    finally:
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_offer_that_times_out_while_watched_ends_the_watch(world):
    frank, conversation = world["agents"]["frank"], world["offered"]
    socket = await _socket(frank.user)
    try:
        await socket.send_json_to({"type": "watch", "conversation": conversation.pk})
        await _until(socket, lambda f: f.get("for") == "watch" and f["type"] == "ack")
        await database_sync_to_async(
            Offer.objects.filter(conversation=conversation).update)(expires_at=timezone.now() - timedelta(seconds=1))
        assert await database_sync_to_async(offers_expire)() == 1
        ended = await _until(socket, lambda f: f["type"] == "watch.ended")
        assert ended["conversation"] == conversation.pk
        await database_sync_to_async(note_add)(conversation=conversation, agent=world["agents"]["carol"], text="x")
        assert [f for f in await _pong(socket) if f.get("type") == "message.created"] == []
    finally:
        await socket.disconnect()
