"""Presence the agent does not pick (issue 4): signing out and losing the console put them offline."""

import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from contactcenter.asgi import application
from conversations.models import Agent, AgentSkill, Offer, PresenceState, Queue, Skill
from conversations.routing import console_presence as presence_service
from conversations.routing.presence import agent_presence_set
from conversations.routing.decisions import route_conversation

from ..factories import make_agent, make_conversation, make_customer, make_inbox

GRACE = 120  # the default of CC_CONSOLE_OFFLINE_GRACE_SECONDS


@pytest.fixture
def states(db):
    """Available and Break, and no offline presence: each test adds the one it needs."""
    return {
        "available": PresenceState.objects.create(name="Available", is_available=True),
        "break": PresenceState.objects.create(name="Break"),
    }


@pytest.fixture
def support(db):
    skill = Skill.objects.create(name="Support", slug="support")
    queue = Queue.objects.create(name="Support", slug="support", is_default=True, offer_timeout_seconds=60)
    queue.required_skills.add(skill)
    return queue


def staff(username, state, **fields):
    agent = make_agent(username, presence=state, **fields)
    AgentSkill.objects.create(agent=agent, skill=Skill.objects.get(slug="support"))
    return agent


def offered(agent):
    """A waiting SMS conversation, offered to ``agent`` (the only one available so far)."""
    conversation = make_conversation(make_customer(), make_inbox("sms"))
    offer = route_conversation(conversation_id=conversation.pk).offer
    assert offer.agent == agent
    return conversation, offer


@pytest.fixture
def sent(monkeypatch):
    """Events published (group, event) and conversations enqueued for routing, instead of the
    channel layer and the broker."""
    from conversations.tasks import route_conversation_task

    record = {"events": [], "routed": []}
    monkeypatch.setattr("conversations.events._groups_send",
                        lambda groups, event, **_: record["events"].extend((group, event) for group in groups))
    monkeypatch.setattr(route_conversation_task, "apply_async",
                        lambda args=(), **_: record["routed"].append(args[0]))
    return record


def presence_events(record, agent):
    return [(group, event) for group, event in record["events"]
            if event["type"] == "agent.presence" and event["agent"] == agent.pk]


# --- signing out ---------------------------------------------------------------------------------

def test_signing_out_puts_an_available_agent_offline_and_their_offer_goes_to_the_next_agent(
        states, support, sent, django_capture_on_commit_callbacks):
    offline = PresenceState.objects.create(name="Signed out", is_offline=True)
    leaving = staff("leaving", states["available"])
    conversation, offer = offered(leaving)
    staying = staff("staying", states["available"])
    client = Client()
    client.force_login(leaving.user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/logout/")

    assert response.status_code == 302
    leaving.refresh_from_db()
    assert leaving.presence == offline
    offer.refresh_from_db()
    assert offer.status == "rescinded"
    assert sent["routed"] == [conversation.pk]  # re-routed at once, not after the offer timeout
    assert route_conversation(conversation_id=conversation.pk).offer.agent == staying
    events = presence_events(sent, leaving)
    assert {group for group, _ in events} == {f"agent.{leaving.pk}", "supervisors"}
    assert events[0][1] | {"presence": None} == {
        "type": "agent.presence", "agent": leaving.pk, "presence": None, "name": "Signed out", "available": False,
        "offline": True, "since": leaving.presence_changed_at.isoformat(), "reason": "signed_out"}


def test_signing_out_creates_an_offline_presence_when_there_is_none(states, support):
    agent = staff("alone", states["available"])
    client = Client()
    client.force_login(agent.user)
    client.post("/accounts/logout/")
    agent.refresh_from_db()
    assert (agent.presence.name, agent.presence.is_offline, agent.presence.is_available) == ("Offline", True, False)
    assert PresenceState.objects.filter(is_offline=True).count() == 1


def test_signing_out_picks_the_first_offline_presence_by_ordering_then_id(states, support):
    PresenceState.objects.create(name="Gone home", is_offline=True, ordering=5)
    first = PresenceState.objects.create(name="Zz offline", is_offline=True, ordering=1)
    PresenceState.objects.create(name="Aa offline", is_offline=True, ordering=1)
    agent = staff("picky", states["available"])
    client = Client()
    client.force_login(agent.user)
    client.post("/accounts/logout/")
    agent.refresh_from_db()
    assert agent.presence == first


def test_an_agent_already_offline_stays_in_their_offline_presence(states, support):
    PresenceState.objects.create(name="Offline", is_offline=True, ordering=1)
    holiday = PresenceState.objects.create(name="Holiday", is_offline=True, ordering=50)
    changed = timezone.now() - timedelta(days=3)
    agent = staff("away", holiday, presence_changed_at=changed)
    client = Client()
    client.force_login(agent.user)
    client.post("/accounts/logout/")
    agent.refresh_from_db()
    assert (agent.presence, agent.presence_changed_at) == (holiday, changed)


def test_an_agent_on_a_break_signing_out_goes_offline_too(states, support):
    agent = staff("breaking", states["break"])
    client = Client()
    client.force_login(agent.user)
    client.post("/accounts/logout/")
    agent.refresh_from_db()
    assert agent.presence.is_offline


def test_users_without_an_agent_sign_out_as_before(admin_user, stranger, db):
    for user in (admin_user, stranger):
        client = Client()
        client.force_login(user)
        assert client.post("/accounts/logout/").status_code == 302
        assert "_auth_user_id" not in client.session
    assert not PresenceState.objects.exists()


def test_signing_out_signs_out_even_when_the_presence_cannot_change(states, support, monkeypatch):
    """The signal comes before Django flushes the session: a failure must not keep the user in."""
    PresenceState.objects.create(name="Offline", is_available=True)  # an admin's mistake: not offline
    agent = staff("unlucky", states["available"])
    client = Client()
    client.force_login(agent.user)
    assert client.post("/accounts/logout/").status_code == 302
    assert "_auth_user_id" not in client.session
    agent.refresh_from_db()
    assert agent.presence == states["available"]
    with pytest.raises(ImproperlyConfigured):
        presence_service.offline_presence()


# --- the tick: available agents whose console went silent --------------------------------------

def test_an_agent_whose_console_went_silent_is_put_offline_after_the_grace(
        states, support, sent, django_capture_on_commit_callbacks):
    agent = staff("gone", states["available"])
    conversation, offer = offered(agent)
    other = staff("other", states["available"])
    last = time.time()
    presence_service.console_seen(agent_id=agent.pk, at=last)

    assert presence_service.agents_without_console_offline(now=last + GRACE) == 0  # within the grace
    with django_capture_on_commit_callbacks(execute=True):
        assert presence_service.agents_without_console_offline(now=last + GRACE + 1) == 1

    agent.refresh_from_db()
    assert agent.presence.is_offline and agent.presence.name == "Offline"
    offer.refresh_from_db()
    assert offer.status == "rescinded"
    assert sent["routed"] == [conversation.pk]
    assert route_conversation(conversation_id=conversation.pk).offer.agent == other
    events = presence_events(sent, agent)
    assert {group for group, _ in events} == {f"agent.{agent.pk}", "supervisors"}
    assert events[0][1]["reason"] == "disconnected" and events[0][1]["available"] is False
    # Done once: the next tick finds nobody.
    assert presence_service.agents_without_console_offline(now=last + GRACE + 10) == 0


@pytest.mark.parametrize(("ui_language", "shown", "not_shown"), [("ja", "オフライン", "Offline"), ("en", "Offline", "オフライン")])
def test_the_notice_on_return_names_the_presence_as_the_sidebar_does(
        states, support, sent, django_capture_on_commit_callbacks, ui_language, shown, not_shown):
    """The message kept for an agent put offline while away names the presence in their language
    when it is a built-in one, as their status menu does (PresenceState.label), not as stored."""
    agent = staff(f"returning-{ui_language}", states["available"], ui_language=ui_language)
    last = time.time()
    presence_service.console_seen(agent_id=agent.pk, at=last)
    with django_capture_on_commit_callbacks(execute=True):  # the notice is kept after commit
        assert presence_service.agents_without_console_offline(now=last + GRACE + 1) == 1
    agent.refresh_from_db()
    assert agent.presence.name == "Offline"
    _agent_id, missed = presence_service.console_opened(user=agent.user)
    assert shown in missed["message"] and not_shown not in missed["message"]
    assert missed["name"] == "Offline"  # the event itself keeps the stored name, as the API shows it


def test_agents_who_never_had_a_console_are_left_alone(states, support):
    """Nothing in the cache: a fresh process, or an agent working through the REST API only."""
    agent = staff("api-only", states["available"], presence_changed_at=timezone.now() - timedelta(days=1))
    assert presence_service.agents_without_console_offline(now=time.time() + 10 * GRACE) == 0
    agent.refresh_from_db()
    assert agent.presence == states["available"]


def test_an_agent_made_available_after_their_console_was_gone_is_left_alone(states, support):
    """Set available over the REST API (or by an admin) long after their console closed."""
    agent = staff("later", states["break"])
    closed = time.time() - 3600
    presence_service.console_seen(agent_id=agent.pk, at=closed)
    agent_presence_set(agent=agent, presence=states["available"])
    assert presence_service.agents_without_console_offline() == 0
    agent.refresh_from_db()
    assert agent.presence == states["available"]


def test_only_available_agents_are_put_offline(states, support):
    agent = staff("on-break", states["break"])
    presence_service.console_seen(agent_id=agent.pk, at=time.time())
    assert presence_service.agents_without_console_offline(now=time.time() + 10 * GRACE) == 0
    agent.refresh_from_db()
    assert agent.presence == states["break"]


def test_a_presence_changed_meanwhile_is_kept_with_its_offers(states, support):
    """The tick read the agent available; they changed presence before it took the lock."""
    agent = staff("quick", states["available"])
    _conversation, offer = offered(agent)
    read = Agent.objects.get(pk=agent.pk).presence_changed_at
    Agent.objects.filter(pk=agent.pk).update(presence_changed_at=read + timedelta(seconds=1))
    assert presence_service.agent_presence_disconnected(agent_id=agent.pk, presence_changed_at=read) is False
    offer.refresh_from_db()
    assert offer.status == "pending"
    agent.refresh_from_db()
    assert agent.presence == states["available"]


def test_a_grace_of_zero_turns_it_off(states, support, settings):
    settings.CC_CONSOLE_OFFLINE_GRACE_SECONDS = 0
    agent = staff("unwatched", states["available"])
    presence_service.console_seen(agent_id=agent.pk, at=time.time() - 3600)
    assert presence_service.agents_without_console_offline(now=time.time() + 3600) == 0
    agent.refresh_from_db()
    assert agent.presence == states["available"]


def test_the_job_runs_on_every_tick():
    from contactcenter import tick

    assert tick.registered()["agents_without_console_offline"] is presence_service.agents_without_console_offline


# --- the console socket keeps its agent seen (both runtime modes) --------------------------------

def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class Clock:
    """``services.presence.clock``, moved by the test: the sockets and the tick read it."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(presence_service, "clock", fake)
    return fake


async def _console(agent):
    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=[
        (b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie.encode())])
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    return communicator


async def _ping(communicator):
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}


tick = database_sync_to_async(presence_service.agents_without_console_offline)


async def _presence_of(agent):
    return await database_sync_to_async(lambda: Agent.objects.select_related("presence").get(pk=agent.pk).presence)()


@pytest.mark.django_db(transaction=True)
async def test_a_console_closed_longer_than_the_grace_puts_the_agent_offline_and_says_why_on_return(
        states, support, clock, sent):
    agent = await database_sync_to_async(staff)("closer", states["available"])
    communicator = await _console(agent)
    clock.now += 5
    await communicator.disconnect()

    clock.now += GRACE - 1
    assert await tick() == 0
    clock.now += 2
    assert await tick() == 1
    assert (await _presence_of(agent)).is_offline

    # Back the next morning: the first console opened is told, once.
    clock.now += 12 * 3600
    communicator = await _console(agent)
    try:
        missed = await communicator.receive_json_from(timeout=5)
        assert missed | {"presence": None, "message": None} == {
            "type": "agent.presence", "agent": agent.pk, "presence": None, "name": "Offline", "available": False,
            "reason": "disconnected", "message": None}
        assert "Offline" in missed["message"] and "Available" in missed["message"]
        assert await communicator.receive_nothing(timeout=0.2)
    finally:
        await communicator.disconnect()
    communicator = await _console(agent)
    try:
        assert await communicator.receive_nothing(timeout=0.2)
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_reload_or_a_blip_shorter_than_the_grace_changes_nothing(states, support, clock, sent):
    agent = await database_sync_to_async(staff)("reloader", states["available"])
    communicator = await _console(agent)
    clock.now += 1
    await communicator.disconnect()
    clock.now += 60  # the blip
    communicator = await _console(agent)
    try:
        clock.now += 90  # connected, idle: 90 s since the reconnect
        assert await tick() == 0
        clock.now += 20
        await _ping(communicator)  # the console's own ping keeps it seen
        clock.now += GRACE - 1
        assert await tick() == 0
    finally:
        await communicator.disconnect()
    clock.now += GRACE
    assert await tick() == 0  # closed exactly the grace ago: not yet
    assert await _presence_of(agent) == states["available"]


@pytest.mark.django_db(transaction=True)
async def test_an_agent_is_gone_only_when_none_of_their_consoles_is_seen(states, support, clock, sent):
    """Two tabs (or two daphne processes: they share the cache): closing one is not leaving."""
    agent = await database_sync_to_async(staff)("two-tabs", states["available"])
    first, second = await _console(agent), await _console(agent)
    try:
        clock.now += 10
        await first.disconnect()
        clock.now += 90
        await _ping(second)
        clock.now += 100  # the first closed 190 s ago, the second was seen 100 s ago
        assert await tick() == 0
    finally:
        await second.disconnect()
    clock.now += GRACE + 1
    assert await tick() == 1
    assert (await _presence_of(agent)).is_offline


@pytest.mark.django_db(transaction=True)
async def test_an_agent_who_never_opened_a_console_is_not_put_offline(states, support, clock, sent):
    agent = await database_sync_to_async(staff)("no-console", states["available"])
    supervisor = await database_sync_to_async(make_agent)("sup", role="supervisor", presence=states["available"])
    watcher = await _console(supervisor)  # someone else's console says nothing about this agent
    try:
        clock.now += 10 * GRACE
        await _ping(watcher)
        assert await tick() == 0
    finally:
        await watcher.disconnect()
    assert await _presence_of(agent) == states["available"]
