"""Fixtures of the voice tests: a voice line with a Japanese/English IVR, its queues, an agent,
and a phone that posts Twilio's signed voice webhooks and reads the TwiML back as XML."""

import itertools
import xml.etree.ElementTree as ET

import pytest
from twilio.request_validator import RequestValidator

from conversations.channels.twilio_client import auth_token
from conversations.models import (
    AgentSkill,
    Inbox,
    PresenceState,
    Queue,
    RoutingRule,
    Skill,
)

from ...factories import make_agent

OUR_VOICE_NUMBER = "+815031239999"
CALLER = "+819012345678"
_sids = itertools.count(1)

IVR = {
    "greeting": {"ja": "お電話ありがとうございます。さくら茶です。", "en": "Thank you for calling Sakura Tea."},
    "menu": {"ja": "ご注文については1、ご請求については2を押してください。", "en": "For orders press 1. For billing press 2."},
    "options": [
        {"key": "1", "name": "orders", "queue": "support", "speech": {"ja": ["注文"], "en": ["order"]}},
        {"key": "2", "name": "billing", "tags": ["billing-call"], "speech": {"ja": ["請求"], "en": ["billing", "invoice"]}},
    ],
    "default_option": "orders",
    "retries": 1,
    "transcribe": True,
}


def new_call_sid() -> str:
    return "CA" + f"{next(_sids):032x}"


@pytest.fixture
def voice_line(db):
    available = PresenceState.objects.get_or_create(name="Available", defaults={"is_available": True})[0]
    support_skill = Skill.objects.create(name="Support", slug="support")
    billing_skill = Skill.objects.create(name="Billing", slug="billing")
    support = Queue.objects.create(name="Support", slug="support", is_default=True, channels=["voice", "sms"])
    support.required_skills.add(support_skill)
    billing = Queue.objects.create(name="Billing", slug="billing", channels=["voice"])
    billing.required_skills.add(billing_skill)
    RoutingRule.objects.create(name="Billing calls", order=1, expression='ivr == "billing"', queue=billing)
    inbox = Inbox.objects.create(kind="voice", name="Voice", address=OUR_VOICE_NUMBER, default_queue=support,
                                 settings={"ivr": IVR})
    return {"inbox": inbox, "support": support, "billing": billing, "available": available,
            "skills": {"support": support_skill, "billing": billing_skill}}


@pytest.fixture
def voice_agent(voice_line):
    agent = make_agent("hana", presence=voice_line["available"], languages=["ja", "en"])
    AgentSkill.objects.create(agent=agent, skill=voice_line["skills"]["support"])
    AgentSkill.objects.create(agent=agent, skill=voice_line["skills"]["billing"])
    return agent


class Queued(list):
    """Every task name queued (after commit) with its arguments, instead of the broker."""

    def names(self) -> list[str]:
        return [name for name, _args in self]

    def args_of(self, name: str) -> list[tuple]:
        return [args for queued, args in self if queued == name]


@pytest.fixture
def queued(monkeypatch):
    from contactcenter import enqueue

    sent = Queued()
    monkeypatch.setattr(enqueue, "enqueue", lambda name, *args, **kwargs: sent.append((name, args)) or True)
    return sent


class Phone:
    """A caller: signed voice webhooks to our endpoints, as Twilio posts them; commit hooks run."""

    def __init__(self, client, capture, *, sender=CALLER, to=OUR_VOICE_NUMBER):
        self.client, self.capture, self.sender, self.to = client, capture, sender, to
        self.sid = new_call_sid()

    def params(self, **extra) -> dict:
        return {"CallSid": self.sid, "AccountSid": "AC" + "d" * 32, "From": self.sender, "To": self.to,
                "Caller": self.sender, "Called": self.to, "CallStatus": "in-progress", "Direction": "inbound",
                "ApiVersion": "2010-04-01", **extra}

    def post(self, path: str, *, signature: str | None = None, **extra):
        params = self.params(**extra)
        url = "http://testserver" + path
        sig = RequestValidator(auth_token()).compute_signature(url, params) if signature is None else signature
        with self.capture(execute=True):
            return self.client.post(path, params, HTTP_X_TWILIO_SIGNATURE=sig)

    def dial(self):
        return self.post("/webhooks/twilio/voice/")


@pytest.fixture
def phone(client, django_capture_on_commit_callbacks, queued):
    def make(**kwargs) -> Phone:
        return Phone(client, django_capture_on_commit_callbacks, **kwargs)

    return make


def verbs(response) -> list[ET.Element]:
    """The TwiML answer's verbs, in order (parsed as XML, as Twilio reads it)."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    return list(root)


def make_agent_for_line(voice_line, username: str):
    """Another available agent with the line's skills."""
    agent = make_agent(username, presence=voice_line["available"], languages=["ja", "en"])
    AgentSkill.objects.create(agent=agent, skill=voice_line["skills"]["support"])
    return agent
