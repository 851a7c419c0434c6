"""What the browser tests seed (committed: the server subprocess reads it)."""

import functools
from dataclasses import dataclass

from conversations.models import Agent, AgentSkill, Inbox, PresenceState, Queue, Skill
from conversations.simulator import client as simulator_client

from ..factories import PASSWORD, make_agent, make_inbox


@functools.cache
def server_password_hash() -> str:
    """``PASSWORD`` hashed with the server's default hasher. The test process hashes with MD5
    (conftest: fast_password_hashing), which the server subprocess does not accept; hashing once
    per session with PBKDF2 at its full cost keeps settings untouched and logins rehash-free."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    hasher = PBKDF2PasswordHasher()
    return hasher.encode(PASSWORD, hasher.salt())


@dataclass
class Presences:
    available: PresenceState
    offline: PresenceState


def presences() -> Presences:
    return Presences(
        available=PresenceState.objects.create(name="Available", is_available=True, ordering=0),
        offline=PresenceState.objects.create(name="Offline", is_offline=True, ordering=30),
    )


@dataclass
class SupportDesk:
    queue: Queue
    skill: Skill
    sms: Inbox


def support_desk(*, auto_accept: bool = False) -> SupportDesk:
    """A Support queue (skill ``support``) and the SMS inbox whose default queue it is."""
    skill = Skill.objects.create(name="Support", slug="support")
    queue = Queue.objects.create(name="Support", slug="support", auto_accept=auto_accept, is_default=True)
    queue.required_skills.set([skill])
    sms = make_inbox("sms", name="SMS +81 50", default_queue=queue)
    return SupportDesk(queue=queue, skill=skill, sms=sms)


def console_agent(username: str, *, display_name: str, presence: PresenceState, skills: list[Skill],
                  role: str = "agent") -> Agent:
    """An agent (or, with ``role="supervisor"``, a supervisor) who can sign in to the server (see
    ``server_password_hash``)."""
    agent = make_agent(username, role=role, display_name=display_name, presence=presence, time_zone="Asia/Tokyo")
    agent.user.password = server_password_hash()
    agent.user.save(update_fields=["password"])
    AgentSkill.objects.bulk_create([AgentSkill(agent=agent, skill=skill, level=3) for skill in skills])
    return agent


def text_in(base_url: str, *, sender: str, to: str, body: str) -> str:
    """The customer texts our number: a webhook to the server, signed as Twilio signs it."""
    params = simulator_client.twilio_sms_params(sender=sender, to=to, body=body)
    response = simulator_client.post_signed(base_url, simulator_client.MESSAGING_PATH, params)
    assert response.status_code == 200, response.text
    return params["MessageSid"]
