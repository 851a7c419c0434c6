"""Build the demo contact center: configuration, users, and 30+ customers with weeks of history.

Idempotent by natural keys: skills, queues, presences and tags by name/slug, inboxes by
(kind, address), users by username; a demo customer is created (with its whole history) only
when none of its addresses exists yet. Users always get the demo password and their role again.
Content is deterministic (one ``random.Random`` per customer); times are relative to "now".
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.hashers import (
    check_password,
    is_password_usable,
    make_password,
)
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from contactcenter.roles import ensure_roles
from profiles import addresses
from profiles.models import (
    Consent,
    ConsentStatus,
    Customer,
    CustomerNote,
    Identity,
    IdentityKind,
    IdentitySource,
    JourneyStage,
    MergeSuggestion,
    SuggestionStatus,
    Tag,
    Touchpoint,
    TouchpointKind,
)
from profiles.services import suggest_same_name_same_domain

from .. import lifecycle
from ..models import (
    Agent,
    AgentSkill,
    CannedResponse,
    Channel,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    EventType,
    Inbox,
    Message,
    MessageKind,
    MessageStatusEvent,
    PresenceState,
    Queue,
    RoutingRule,
    Skill,
    WrapUpCode,
)
from . import data

SEED = "contactcenter-demo-v1"
HISTORY_DAYS = 56  # about eight weeks
TIME_ZONE = "Asia/Tokyo"

SKILLS = [("Sales", "sales"), ("Support", "support"), ("Billing", "billing"), ("Japanese", "japanese"), ("English", "english")]
PRESENCES = [("Available", True, False, 0), ("Break", False, False, 10), ("Lunch", False, False, 20), ("Offline", False, True, 30)]
QUEUES = [
    # slug, name, required skills, channels, priority, SLA seconds
    ("sales", "Sales", ["sales"], ["webchat", "sms", "whatsapp", "voice", "email"], 10, 30),
    ("support", "Support", ["support"], ["sms", "whatsapp", "email", "webchat", "voice"], 5, 60),
    ("billing", "Billing", ["billing"], ["email", "voice", "webchat", "sms"], 0, 120),
]
INBOXES = [
    # kind, name, address, default queue
    (Channel.SMS, "SMS +81 50", "+815031230001", "support"),
    (Channel.WHATSAPP, "WhatsApp", "+815031230002", "support"),
    (Channel.EMAIL, "Support mailbox", "support@sakura-tea.example", "support"),
    (Channel.WEBCHAT, "Web chat (shop)", "demo-shop-widget", "sales"),
    (Channel.VOICE, "Voice line +81 50", "+815031230003", "support"),
]
USERS = {
    # username: (first, last, role, staff, superuser, agent fields or None)
    "alice": ("Alice", "Tanaka", "agent", False, False,
              {"languages": ["ja", "en"], "skills": {"support": 3, "billing": 2, "japanese": 3, "english": 2}, "ui_language": "ja"}),
    "bob": ("Bob", "Miller", "agent", False, False,
            {"languages": ["en"], "skills": {"sales": 3, "english": 3}, "ui_language": "en"}),
    "carol": ("Carol", "Suzuki", "supervisor", True, False,
              {"languages": ["ja", "en"],
               "skills": {"sales": 2, "support": 2, "billing": 2, "japanese": 3, "english": 3}, "ui_language": "en"}),
    "admin": ("Admin", "", "admin", True, True, None),
}
STAGES = [choice for choice, _label in JourneyStage.choices]
PRE_PURCHASE = {"interest", "information_gathering", "comparison", "purchase_decision"}


@dataclass
class SeedResult:
    customers_created: int = 0
    customers_existing: int = 0
    counts: dict = field(default_factory=dict)


@dataclass
class CustomerSpec:
    index: int
    name: str
    family: str
    given: str
    language: str
    email: str
    phone: str | None
    whatsapp: bool
    web_visitor: bool
    last_outcome: str = "resolved"  # resolved | waiting | open | pending | snoozed
    sms_fail: bool = False
    transfer: bool = False
    only_email: bool = False
    wholesale: bool = False
    company: str = ""


# --------------------------------------------------------------------------- configuration


ROUTING_RULES = [
    # The voice line's IVR: option 2 (billing) names no queue, so this rule places it (rule field ivr).
    ("Billing calls", 'ivr == "billing"', "billing"),
    ("Billing questions", '"請求" in subject or "invoice" in subject or "receipt" in subject or "領収書" in subject', "billing"),
    ("Orders and products from prospects", 'journey_stage in ["interest", "information_gathering", "comparison", "purchase_decision"]', "sales"),
]


# The demo's voice line, set up as a Japanese business sets one up: a Japanese greeting and menu
# first (9 for English), keypad or speech, options leading to the demo's queues, and the phone
# desk's opening hours (Tokyo), checked before the menu; after hours, voicemail.
VOICE_IVR = {
    "greeting": {"ja": "お電話ありがとうございます。さくら茶カスタマーセンターでございます。",
                 "en": "Thank you for calling the Sakura Tea customer center."},
    "menu": {"ja": "ご注文・配送については1を、ご請求・お支払いについては2を、商品のご購入のご相談は3を"
                   "押すか、ご用件をお話しください。",
             "en": "For orders and delivery, press 1. For billing and payments, press 2. To talk about buying "
                   "our teas, press 3. Or just tell us what you are calling about."},
    "options": [
        {"key": "1", "name": "orders", "queue": "support",
         "speech": {"ja": ["注文", "配送", "届かない", "荷物"], "en": ["order", "delivery", "parcel"]}},
        {"key": "2", "name": "billing", "tags": ["billing"],
         "speech": {"ja": ["請求", "支払", "領収書"], "en": ["bill", "invoice", "payment", "receipt"]}},
        {"key": "3", "name": "sales", "queue": "sales",
         "speech": {"ja": ["購入", "新商品", "相談"], "en": ["buy", "purchase", "product"]}},
    ],
    "default_option": "orders",
    "retries": 2,
    "timeout": 5,
    "max_wait_seconds": 600,
    "business_hours": {"time_zone": TIME_ZONE,
                       "weekly": {day: [["09:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
                       | {"sat": [["10:00", "18:00"]], "sun": []},
                       "holidays": ["2026-12-31", "2027-01-01", "2027-01-02", "2027-01-03"]},
}


def demo_email_secret() -> str:
    """The demo email inbox's webhook secret: ``CC_DEMO_EMAIL_SECRET`` (the README names its default)."""
    from django.conf import settings

    return getattr(settings, "CC_DEMO_EMAIL_SECRET", "") or ""


def ensure_configuration(password: str, email_secret: str | None = None) -> dict:
    email_secret = demo_email_secret() if email_secret is None else email_secret
    ensure_roles()
    skills = {slug: Skill.objects.get_or_create(slug=slug, defaults={"name": name})[0] for name, slug in SKILLS}
    presences = {}
    for name, available, offline, order in PRESENCES:
        presences[name] = PresenceState.objects.get_or_create(
            name=name, defaults={"is_available": available, "is_offline": offline, "ordering": order}
        )[0]
    queues = {}
    for slug, name, required, channels, priority, sla in QUEUES:
        queue, created = Queue.objects.get_or_create(
            slug=slug, defaults={"name": name, "channels": channels, "priority": priority, "sla_seconds": sla}
        )
        if created:
            queue.required_skills.set([skills[s] for s in required])
        queues[slug] = queue
    if not Queue.objects.filter(is_default=True).exists():
        Queue.objects.filter(slug="support").update(is_default=True)
    # Routing rules: the first match wins; otherwise the inbox's default queue.
    for order, (name, expression, queue_slug) in enumerate(ROUTING_RULES, start=1):
        RoutingRule.objects.get_or_create(
            name=name, defaults={"order": order * 10, "expression": expression, "queue": queues[queue_slug]})
    inboxes = {}
    for kind, name, address, queue_slug in INBOXES:
        defaults = {"name": name, "default_queue": queues[queue_slug]}
        if kind == Channel.WEBCHAT:
            defaults["secret"] = secrets.token_urlsafe(32)  # generated once, kept on re-runs
        if kind == Channel.VOICE:
            defaults["settings"] = {"ivr": VOICE_IVR}
        if kind == Channel.EMAIL:
            # Known (README, printed by seed_demo) so POST /webhooks/email/ works in the demo.
            defaults["secret"] = email_secret
        inbox = Inbox.objects.get_or_create(kind=kind, address=address, defaults=defaults)[0]
        if kind == Channel.EMAIL and not inbox.secret and email_secret:
            # A demo seeded before the email inbox had a secret gets it now; one set by hand is kept.
            inbox.secret = email_secret
            inbox.save(update_fields=["secret"])
        if kind == Channel.VOICE and "ivr" not in (inbox.settings or {}):
            # A demo seeded before the line had its IVR gets it now; one configured by hand is kept.
            inbox.settings = {**(inbox.settings or {}), "ivr": VOICE_IVR}
            inbox.save(update_fields=["settings"])
        inboxes[str(kind)] = inbox
    groups = {group.name: group for group in Group.objects.filter(name__in=["agent", "supervisor", "admin"])}
    agents = {}
    hashes = _PasswordHashes(password)
    for username, (first, last, role, staff, superuser, agent_fields) in USERS.items():
        user, _created = User.objects.get_or_create(username=username)
        user.first_name, user.last_name = first, last
        user.email = user.email or f"{username}@sakura-tea.example"
        user.is_staff, user.is_superuser, user.is_active = staff, superuser, True
        user.password = hashes.encoded_for(user.password)
        user.save()
        user.groups.set([groups[role]])
        if agent_fields is None:
            continue
        agent, created = Agent.objects.get_or_create(
            user=user,
            defaults={
                "display_name": f"{first} {last}".strip(),
                "languages": agent_fields["languages"],
                "presence": presences["Offline"],
                "time_zone": TIME_ZONE,
                "ui_language": agent_fields["ui_language"],
            },
        )
        if created:
            AgentSkill.objects.bulk_create(
                [AgentSkill(agent=agent, skill=skills[slug], level=level) for slug, level in agent_fields["skills"].items()]
            )
        agents[username] = agent
    tags = {name: Tag.objects.get_or_create(name=name)[0] for name in data.TAG_NAMES}
    for ordering, (code, label, label_ja) in enumerate(data.WRAP_UP_CODES):
        WrapUpCode.objects.get_or_create(
            code=code, defaults={"label": label, "label_translations": {"ja": label_ja}, "ordering": ordering})
    for shortcode, title, language, text in data.CANNED_RESPONSES:
        CannedResponse.objects.get_or_create(shortcode=shortcode, defaults={"title": title, "language": language, "text": text})
    return {"skills": skills, "queues": queues, "inboxes": inboxes, "agents": agents, "tags": tags}


class _PasswordHashes:
    """Password hashing is slow on purpose: hash the demo password once, verify each distinct hash once."""

    def __init__(self, password: str):
        self.password = password
        self.fresh: str | None = None
        self.verified: dict[str, bool] = {}

    def encoded_for(self, current: str) -> str:
        if current and is_password_usable(current):
            if current not in self.verified:
                self.verified[current] = check_password(self.password, current)
            if self.verified[current]:
                return current
        if self.fresh is None:
            self.fresh = make_password(self.password)
        return self.fresh


# --------------------------------------------------------------------------- customer specs


def customer_specs() -> list[CustomerSpec]:
    specs = []
    people = [(p, "ja") for p in data.JAPANESE_CUSTOMERS] + [(p, "en") for p in data.ENGLISH_CUSTOMERS]
    special = {1: "waiting", 3: "open", 6: "pending", 12: "snoozed", 17: "waiting", 20: "open", 23: "pending", 28: "open"}
    wholesale = {5, 9, 15, 19, 25}
    for index, ((name, family, given, local, domain), language) in enumerate(people):
        prefix = "+8190" if language == "ja" else "+8180"
        company = (f"株式会社{family}商店" if language == "ja" else f"{family} & Co.") if index in wholesale else ""
        specs.append(
            CustomerSpec(
                index=index, name=name, family=family, given=given, language=language,
                email=f"{local}@{domain}", phone=f"{prefix}{10000000 + index * 123457:08d}",
                whatsapp=index % 3 == 1 or index % 5 == 0, web_visitor=index % 3 != 2,
                last_outcome=special.get(index, "resolved"), sms_fail=index == 4, transfer=index == 18,
                wholesale=index in wholesale, company=company,
            )
        )
    name, family, given = data.MERGE_PAIR_NAME
    base = len(specs)
    specs.append(
        CustomerSpec(
            index=base, name=name, family=family, given=given, language="en", email=data.MERGE_PAIR_PRIMARY_EMAIL,
            phone=f"+8190{10000000 + base * 123457:08d}", whatsapp=True, web_visitor=True, wholesale=True,
            company="Acme Trading Co., Ltd.",
        )
    )
    specs.append(
        CustomerSpec(
            index=base + 1, name=name, family=family, given=given, language="en", email=data.MERGE_PAIR_DUPLICATE_EMAIL,
            phone=None, whatsapp=False, web_visitor=False, last_outcome="waiting", only_email=True, wholesale=True,
            company="Acme Trading Co., Ltd.",
        )
    )
    return specs


def spec_identities(spec: CustomerSpec) -> list[tuple[str, str, str]]:
    """(kind, normalized value, source) of a demo customer; the first one is its natural key."""
    found = [(IdentityKind.EMAIL, addresses.normalize(IdentityKind.EMAIL, spec.email), IdentitySource.INBOUND)]
    if spec.phone:
        found.append((IdentityKind.PHONE, addresses.normalize(IdentityKind.PHONE, spec.phone), IdentitySource.INBOUND))
        if spec.whatsapp:
            found.append((IdentityKind.WHATSAPP, addresses.normalize(IdentityKind.WHATSAPP, spec.phone), IdentitySource.PROVIDER))
    if spec.web_visitor:
        token = f"v_{random.Random(f'{SEED}:visitor:{spec.index}').getrandbits(64):016x}"
        found.append((IdentityKind.WEB_VISITOR, token, IdentitySource.SIGNED))
    return found


# --------------------------------------------------------------------------- history drafts


@dataclass
class Draft:
    """A conversation and its messages, built in memory and written with bulk_create."""

    conversation: Conversation
    messages: list[Message]
    status_events: list[tuple[int, str, str, datetime]]  # (message index, status, error code, at)


class HistoryBuilder:
    def __init__(self, spec: CustomerSpec, customer: Customer, config: dict, now: datetime, tags: set[str]):
        self.spec, self.customer, self.config, self.now, self.tags = spec, customer, config, now, tags
        self.rng = random.Random(f"{SEED}:{spec.index}")
        self.lang = spec.language
        self.city = customer.custom_attributes.get("city", "")
        self.orders = [f"SO-{20000 + spec.index * 41 + k}" for k in range(3)]
        self.identities = {kind: value for kind, value, _source in spec_identities(spec)}
        self.drafts: list[Draft] = []

    # -- helpers

    def hexid(self, bits: int = 128) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def fill(self, text: str, ctx: dict) -> str:
        return text.format(**ctx)

    def context(self) -> dict:
        rng = self.rng
        return {
            "first": self.spec.given, "family": self.spec.family, "order": rng.choice(self.orders),
            "tracking": f"{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
            "amount": f"{rng.choice([980, 2400, 3200, 5400, 12800]):,}",
            "company": self.spec.company or (f"{self.spec.family}商事" if self.lang == "ja" else f"{self.spec.family} Design"),
            "city": self.city,
        }

    def gap(self, channel: str, what: str, fast: bool) -> timedelta:
        rng = self.rng
        if fast:
            minutes = {"first": (1, 6), "customer": (1, 8), "agent": (1, 5)}[what]
        elif channel == Channel.EMAIL:
            minutes = {"first": (20, 240), "customer": (30, 600), "agent": (10, 120)}[what]
        elif channel == Channel.WEBCHAT:
            minutes = {"first": (0.5, 3), "customer": (0.5, 3), "agent": (0.5, 4)}[what]
        else:
            minutes = {"first": (2, 20), "customer": (3, 60), "agent": (1, 10)}[what]
        return timedelta(seconds=int(rng.uniform(*minutes) * 60) + rng.randint(0, 59))

    def pick_agent(self, queue: str) -> Agent:
        agents, rng = self.config["agents"], self.rng
        if queue == "sales" and self.lang == "en":
            return agents["bob"]
        return agents["carol"] if rng.random() < 0.2 else agents["alice"]

    def topics(self) -> list[str]:
        if self.customer.journey_stage in PRE_PURCHASE:
            return ["product_question", "wholesale", "account"] if self.spec.wholesale else ["product_question", "account"]
        pool = ["order_status", "damaged", "double_charge", "invoice", "product_question", "return", "account", "plan_change"]
        return pool + (["wholesale", "wholesale"] if self.spec.wholesale else [])

    # -- one conversation

    def new_message(self, draft: Draft, at: datetime, direction: str, *, kind=MessageKind.MESSAGE, text="", **extra) -> Message:
        conv = draft.conversation
        message = Message(
            customer=self.customer, inbox=conv.inbox, channel=conv.channel, direction=direction, kind=kind,
            text=text, created_at=at, **extra,
        )
        draft.messages.append(message)
        return message

    def event(self, draft: Draft, at: datetime, event_type: str, event_data: dict, agent: Agent | None = None) -> None:
        self.new_message(
            draft, at, Direction.INTERNAL, kind=MessageKind.EVENT, event_type=event_type, event_data=event_data,
            author_agent=agent,
        )

    def assigned_data(self, agent: Agent, queue: str) -> dict:
        return {"agent_id": agent.pk, "agent": agent.display_name, "queue": queue, "by": "routing"}

    def chat_message(self, draft: Draft, at: datetime, direction: str, text: str, agent: Agent | None,
                     subject: str, failed: bool = False) -> Message:
        conv, channel = draft.conversation, draft.conversation.channel
        customer_address = {
            Channel.SMS: self.identities.get(IdentityKind.PHONE, ""),
            Channel.WHATSAPP: f"whatsapp:{self.identities.get(IdentityKind.WHATSAPP, '')}",
            Channel.EMAIL: self.identities.get(IdentityKind.EMAIL, ""),
            Channel.WEBCHAT: self.identities.get(IdentityKind.WEB_VISITOR, ""),
        }.get(channel, "")
        ours = conv.inbox.address if channel != Channel.WHATSAPP else f"whatsapp:{conv.inbox.address}"
        inbound = direction == Direction.INBOUND
        extra: dict = {"metadata": {}}
        if channel in (Channel.SMS, Channel.WHATSAPP):
            extra["provider_id"] = ("SM" if channel == Channel.SMS else "MM") + self.hexid()
            extra["metadata"] = {"From": customer_address if inbound else ours, "To": ours if inbound else customer_address}
            if inbound:
                extra["delivery_status"] = DeliveryStatus.RECEIVED
            elif failed:
                extra.update(
                    delivery_status=DeliveryStatus.FAILED, delivery_error_code="30003",
                    delivery_error="Unreachable destination handset",
                )
            else:
                extra["delivery_status"] = DeliveryStatus.READ if channel == Channel.WHATSAPP else DeliveryStatus.DELIVERED
        elif channel == Channel.EMAIL:
            domain = customer_address.rsplit("@", 1)[-1] if inbound else conv.inbox.address.rsplit("@", 1)[-1]
            extra["provider_id"] = f"<{self.hexid(96)}@{domain}>"
            extra["metadata"] = {
                "subject": subject if inbound else f"Re: {subject}",
                "from": customer_address if inbound else conv.inbox.address,
                "to": conv.inbox.address if inbound else customer_address,
                "message_id": extra["provider_id"],
            }
            if not inbound:
                extra["delivery_status"] = DeliveryStatus.SENT
        elif channel == Channel.WEBCHAT:
            if inbound:
                path = self.rng.choice(data.PAGES)[0]
                extra["metadata"] = {"page_url": f"{data.SHOP}{path}", "user_agent": self.rng.choice(data.DEVICES)}
            else:
                extra["delivery_status"] = DeliveryStatus.DELIVERED
        message = self.new_message(draft, at, direction, text=text, author_agent=None if inbound else agent, **extra)
        if not inbound and channel in (Channel.SMS, Channel.WHATSAPP):
            index = len(draft.messages) - 1
            draft.status_events.append((index, DeliveryStatus.SENT, "", at + timedelta(seconds=1)))
            if failed:
                draft.status_events.append((index, DeliveryStatus.FAILED, "30003", at + timedelta(seconds=4)))
            else:
                draft.status_events.append((index, DeliveryStatus.DELIVERED, "", at + timedelta(seconds=3)))
                if channel == Channel.WHATSAPP:
                    draft.status_events.append((index, DeliveryStatus.READ, "", at + timedelta(minutes=1)))
        return message

    def build_conversation(self, channel: str, start: datetime, outcome: str, *, first: bool) -> Draft:
        rng, spec = self.rng, self.spec
        topic_key = rng.choice(self.topics())
        if spec.transfer and first:
            topic_key = "plan_change"
        if spec.only_email:
            topic_key = "invoice"
        topic = data.TOPICS[topic_key]
        ctx = self.context()
        queue_slug = topic["queue"]
        subject = self.fill(topic["subject"][self.lang], ctx)
        inbox = self.config["inboxes"][channel]
        agent = None if outcome == "waiting" else self.pick_agent(queue_slug)
        transfer_from = None
        if spec.transfer and first:
            transfer_from, agent, queue_slug = self.config["agents"]["bob"], self.config["agents"]["alice"], "billing"
        conversation = Conversation(
            customer=self.customer, inbox=inbox, channel=channel, queue=self.config["queues"][queue_slug],
            assignee=agent, subject=subject if channel == Channel.EMAIL else "", created_at=start,
            priority=1 if self.spec.index % 7 == 0 else 0,
        )
        draft = Draft(conversation=conversation, messages=[], status_events=[])
        if channel == Channel.VOICE:
            self.build_call(draft, start, agent, queue_slug, topic, ctx)
        else:
            self.build_exchange(draft, start, outcome, agent, queue_slug, topic, ctx, subject, transfer_from)
        self.finish(draft, outcome)
        return draft

    def build_call(self, draft, start, agent, queue_slug, topic, ctx) -> None:
        rng = self.rng
        duration = rng.randint(75, 540)
        answered = start + timedelta(seconds=rng.randint(4, 25))
        text = data.CALL_TEXT[self.lang].format(minutes=duration // 60, seconds=duration % 60)
        call_sid = "CA" + self.hexid()
        self.new_message(
            draft, start, Direction.INBOUND, text=text, provider_id=call_sid,
            metadata={
                "call_sid": call_sid, "from": self.identities.get(IdentityKind.PHONE, ""), "to": draft.conversation.inbox.address,
                "duration_seconds": duration, "call_status": "completed", "answered_by": agent.user.username,
            },
        )
        self.event(draft, answered, EventType.ASSIGNED, self.assigned_data(agent, queue_slug))
        draft.conversation.first_response_at = answered
        end = answered + timedelta(seconds=duration)
        summary = data.CALL_NOTE_PREFIX[self.lang] + self.fill(topic["summary"][self.lang], ctx)
        self.new_message(draft, end + timedelta(seconds=40), Direction.INTERNAL, kind=MessageKind.NOTE, text=summary, author_agent=agent)
        self.event(draft, end + timedelta(seconds=rng.randint(60, 180)), EventType.RESOLVED,
                   {"agent_id": agent.pk, "by": agent.user.username}, agent)

    def build_exchange(self, draft, start, outcome, agent, queue_slug, topic, ctx, subject, transfer_from) -> None:
        rng, channel = self.rng, draft.conversation.channel
        fast = outcome in ("waiting", "open")
        steps = topic[self.lang]
        failed_sms = self.spec.sms_fail and channel == Channel.SMS and outcome == "resolved"
        if outcome == "waiting":
            steps = steps[:1]
        elif outcome in ("pending", "snoozed"):
            steps = steps[:2]
        elif outcome == "open":
            steps = steps[:3]
        elif failed_sms:
            steps = steps[:2]
        at = start
        answered = False
        for position, (direction, template) in enumerate(steps):
            text = self.fill(template, ctx)
            if direction == "in":
                if position:
                    at += self.gap(channel, "customer", fast)
                self.chat_message(draft, at, Direction.INBOUND, text, None, subject)
                if position == 0 and "VIP" in self.tags and rng.random() < 0.6 and outcome != "waiting":
                    at += timedelta(seconds=rng.randint(20, 90))
                    self.new_message(draft, at, Direction.INTERNAL, kind=MessageKind.NOTE,
                                     text=data.VIP_NOTE[self.lang], author_agent=agent)
                continue
            if not answered:
                response = self.gap(channel, "first", fast)
                if transfer_from is not None:
                    self.event(draft, at + response / 4, EventType.ASSIGNED, self.assigned_data(transfer_from, "sales"))
                    self.event(draft, at + response / 2, EventType.TRANSFERRED, {
                        "from_agent_id": transfer_from.pk, "from_agent": transfer_from.display_name,
                        "to_agent_id": agent.pk, "to_agent": agent.display_name,
                        "from_queue": "sales", "to_queue": queue_slug, "reason": "billing question",
                    }, transfer_from)
                else:
                    self.event(draft, at + response / 3, EventType.ASSIGNED, self.assigned_data(agent, queue_slug))
                at += response
                answered = True
            else:
                at += self.gap(channel, "agent", fast)
            self.chat_message(draft, at, Direction.OUTBOUND, text, agent, subject, failed=failed_sms)
        if failed_sms:
            at += timedelta(minutes=rng.randint(5, 30))
            self.new_message(draft, at, Direction.INTERNAL, kind=MessageKind.NOTE, text=data.FAILED_SMS_NOTE[self.lang],
                             author_agent=agent)
        if outcome == "snoozed":
            until = self.now + timedelta(days=1)
            at += timedelta(minutes=rng.randint(1, 10))
            self.event(draft, at, EventType.SNOOZED, {"until": until.isoformat(), "by": agent.user.username}, agent)
            draft.conversation.snoozed_until = until
        if outcome == "resolved":
            self.event(draft, at + timedelta(minutes=rng.randint(2, 60)), EventType.RESOLVED,
                       {"agent_id": agent.pk, "by": agent.user.username}, agent)

    def finish(self, draft: Draft, outcome: str) -> None:
        conv, messages = draft.conversation, draft.messages
        conv.status = {
            "resolved": ConversationStatus.RESOLVED, "waiting": ConversationStatus.OPEN, "open": ConversationStatus.OPEN,
            "pending": ConversationStatus.PENDING, "snoozed": ConversationStatus.SNOOZED,
        }[outcome]
        visible = [m for m in messages if m.kind != MessageKind.EVENT]
        conv.last_message_at = visible[-1].created_at
        outbound = [m for m in messages if m.direction == Direction.OUTBOUND]
        if outbound and conv.first_response_at is None:
            conv.first_response_at = outbound[0].created_at
        if outcome == "resolved":
            conv.resolved_at = messages[-1].created_at
        # First inbound message after the last agent reply, if any is unanswered.
        last_out = outbound[-1].created_at if outbound else None
        unanswered = [m for m in messages if m.direction == Direction.INBOUND and (last_out is None or m.created_at > last_out)]
        if conv.status == ConversationStatus.OPEN and unanswered:
            conv.waiting_since = unanswered[0].created_at

    # -- the whole customer

    def channels(self, count: int) -> list[str]:
        spec, rng = self.spec, self.rng
        if spec.only_email:
            return [Channel.EMAIL]
        available = [Channel.SMS, Channel.EMAIL, Channel.VOICE]
        if spec.web_visitor:
            available.append(Channel.WEBCHAT)
        if spec.whatsapp:
            available.append(Channel.WHATSAPP)
        chosen = rng.sample(available, 3)
        if spec.sms_fail and Channel.SMS not in chosen:
            chosen[0] = Channel.SMS
        chosen += [rng.choice(available) for _ in range(count - 3)]
        rng.shuffle(chosen)
        return [str(c) for c in chosen]

    def build(self) -> list[Draft]:
        rng, now = self.rng, self.now
        count = 1 if self.spec.only_email else rng.randint(3, 5)
        channels = self.channels(count)
        window_start, window_end = now - timedelta(days=HISTORY_DAYS), now - timedelta(days=2)
        span = (window_end - window_start) / count
        starts = [window_start + span * k + timedelta(seconds=rng.randint(0, int(span.total_seconds() * 0.8))) for k in range(count)]
        outcome_last = self.spec.last_outcome
        if outcome_last != "resolved":
            # The live conversation must be a text one, and recent.
            if channels[-1] == Channel.VOICE:
                swap = next((i for i, c in enumerate(channels) if c != Channel.VOICE), None)
                if swap is None:
                    channels[-1] = Channel.EMAIL
                else:
                    channels[-1], channels[swap] = channels[swap], channels[-1]
            minutes_ago = {"waiting": (6, 35), "open": (40, 150), "pending": (300, 1500), "snoozed": (600, 1800)}[outcome_last]
            starts[-1] = now - timedelta(minutes=rng.randint(*minutes_ago))
        if self.spec.sms_fail:
            # Make the failed SMS the first, resolved conversation.
            sms_at = channels.index(Channel.SMS)
            channels[0], channels[sms_at] = channels[sms_at], channels[0]
        for position, (channel, start) in enumerate(zip(channels, starts, strict=True)):
            outcome = outcome_last if position == count - 1 else "resolved"
            self.drafts.append(self.build_conversation(channel, start, outcome, first=position == 0))
        return self.drafts


# --------------------------------------------------------------------------- profile pieces


def profile_for(spec: CustomerSpec, rng: random.Random) -> tuple[str, set[str], dict]:
    stage = STAGES[spec.index % len(STAGES)]
    if spec.only_email:
        stage = JourneyStage.REPEAT_PURCHASE
    tags = set()
    if spec.index % 7 == 0:
        tags.add("VIP")
    if stage in ("interest", "information_gathering"):
        tags.add("new")
    if spec.wholesale:
        tags.add("wholesale")
    if stage == "repeat_purchase":
        tags.add("repeat")
    if spec.index in (4, 21):
        tags.add("at-risk")
    if spec.index % 4 == 1:
        tags.add("newsletter")
    orders = 0 if stage in PRE_PURCHASE else rng.randint(1, 4 if stage == "purchase" else 14)
    city = rng.choice(data.CITIES_JA if spec.language == "ja" else data.CITIES_EN)
    attributes = {
        "plan": "Business" if spec.wholesale else rng.choice(data.PLANS),
        "city": city,
        "order_count": orders,
        "lifetime_value_jpy": orders * rng.choice([2400, 4800, 7600, 12800]),
    }
    if spec.company:
        attributes["company"] = spec.company
    return stage, tags, attributes


def touchpoints_for(spec: CustomerSpec, customer: Customer, rng: random.Random, now: datetime, orders: list[str]) -> list[Touchpoint]:
    ja = spec.language == "ja"
    city = customer.custom_attributes.get("city", "")
    device = rng.choice(data.DEVICES)
    found = []
    for _ in range(rng.randint(3, 7)):
        at = now - timedelta(days=rng.uniform(1, HISTORY_DAYS), minutes=rng.randint(0, 600))
        kind = rng.choice([TouchpointKind.PAGE_VIEW, TouchpointKind.PAGE_VIEW, TouchpointKind.PRODUCT_VIEW, TouchpointKind.APP_EVENT])
        if kind == TouchpointKind.PAGE_VIEW:
            path, title_en, title_ja = rng.choice(data.PAGES)
            found.append(Touchpoint(customer=customer, kind=kind, title=title_ja if ja else title_en, url=f"{data.SHOP}{path}",
                                    location=city, device=device, channel="web", occurred_at=at,
                                    data={"referrer": rng.choice(["google", "instagram", "newsletter", "direct"])}))
        elif kind == TouchpointKind.PRODUCT_VIEW:
            name_ja, name_en, sku, price = rng.choice(data.PRODUCTS)
            found.append(Touchpoint(customer=customer, kind=kind, title=name_ja if ja else name_en,
                                    url=f"{data.SHOP}/products/{sku.lower()}", location=city, device=device, channel="web",
                                    occurred_at=at, data={"sku": sku, "price": price, "currency": "JPY"}))
        else:
            event = rng.choice(data.APP_EVENTS)
            found.append(Touchpoint(customer=customer, kind=kind, title=event, url=f"app://{event.lower().replace(' ', '-')}",
                                    location=city, device=rng.choice(["iPhone app 3.4", "Android app 3.4"]), channel="app",
                                    occurred_at=at, data={"app_version": "3.4.1"}))
    if customer.custom_attributes.get("order_count"):
        for order in orders[: min(2, customer.custom_attributes["order_count"])]:
            name_ja, name_en, sku, price = rng.choice(data.PRODUCTS)
            quantity = rng.randint(1, 3) * (10 if spec.wholesale else 1)
            found.append(Touchpoint(customer=customer, kind=TouchpointKind.PURCHASE, title=f"Order {order}",
                                    url=f"{data.SHOP}/orders/{order}", location=city, device=device, channel="web",
                                    occurred_at=now - timedelta(days=rng.uniform(10, HISTORY_DAYS)),
                                    data={"order_id": order, "items": [{"sku": sku, "name": name_ja if ja else name_en,
                                                                         "quantity": quantity}],
                                          "total": price * quantity, "currency": "JPY"}))
    if rng.random() < 0.25:
        found.append(Touchpoint(customer=customer, kind=TouchpointKind.STORE_VISIT, title=rng.choice(data.STORES),
                                location=city, device="", channel="store",
                                occurred_at=now - timedelta(days=rng.uniform(3, HISTORY_DAYS))))
    return found


# --------------------------------------------------------------------------- entry point


def create_customer(spec: CustomerSpec, config: dict, now: datetime) -> list[Draft]:
    rng = random.Random(f"{SEED}:profile:{spec.index}")
    stage, tag_names, attributes = profile_for(spec, rng)
    customer = Customer.objects.create(
        display_name=spec.name, language=spec.language, time_zone=TIME_ZONE, journey_stage=stage,
        custom_attributes=attributes, created_at=now - timedelta(days=HISTORY_DAYS + rng.randint(1, 60)),
    )
    if tag_names:
        customer.tags.set([config["tags"][name] for name in sorted(tag_names)])
    builder = HistoryBuilder(spec, customer, config, now, tag_names)
    drafts = builder.build()
    first_seen = min(d.conversation.created_at for d in drafts)
    last_seen = max(d.conversation.last_message_at for d in drafts)
    Identity.objects.bulk_create([
        Identity(customer=customer, kind=kind, value=value, verified=True, source=source,
                 created_at=min(first_seen, customer.created_at + timedelta(days=1)), last_seen_at=last_seen)
        for kind, value, source in spec_identities(spec)
    ])
    Touchpoint.objects.bulk_create(touchpoints_for(spec, customer, rng, now, builder.orders))
    agents = config["agents"]
    if spec.index % 3 == 0 and not spec.only_email:
        notes = data.NOTES_JA if spec.language == "ja" else data.NOTES_EN
        author = agents["alice"] if spec.language == "ja" or rng.random() < 0.5 else agents["bob"]
        CustomerNote.objects.create(customer=customer, author=author.user, text=rng.choice(notes),
                                    created_at=now - timedelta(days=rng.uniform(2, HISTORY_DAYS)))
    consents = []
    phone = builder.identities.get(IdentityKind.PHONE)
    if phone and spec.index % 4 == 0:
        consents.append(Consent(customer=customer, channel="sms", address=phone, status=ConsentStatus.OPTED_IN,
                                source="checkout", evidence="Checked “SMS order updates” at checkout",
                                changed_at=now - timedelta(days=rng.uniform(20, HISTORY_DAYS))))
    if spec.index % 4 == 1:
        consents.append(Consent(customer=customer, channel="email", address=builder.identities[IdentityKind.EMAIL],
                                status=ConsentStatus.OPTED_IN, source="newsletter_signup", evidence="Double opt-in confirmed",
                                changed_at=now - timedelta(days=rng.uniform(20, HISTORY_DAYS))))
    if phone and spec.index == 10:
        consents.append(Consent(customer=customer, channel="sms", address=phone, status=ConsentStatus.OPTED_OUT,
                                source="keyword", evidence="STOP", changed_at=now - timedelta(days=5)))
    if consents:
        Consent.objects.bulk_create(consents)
    return drafts


def write_drafts(drafts: list[Draft]) -> None:
    conversations = Conversation.objects.bulk_create([d.conversation for d in drafts])
    messages = []
    for draft, conversation in zip(drafts, conversations, strict=True):
        # Sequence numbers in timeline order (see conversations.sequence).
        ordered = sorted(draft.messages, key=lambda m: m.created_at)
        for seq, message in enumerate(ordered, start=1):
            message.conversation = conversation
            message.seq = seq
        conversation.last_seq = len(ordered)
        messages.extend(draft.messages)
    Message.objects.bulk_create(messages, batch_size=500)
    Conversation.objects.bulk_update(conversations, ["last_seq"], batch_size=500)
    events = []
    for draft in drafts:
        for index, status, error_code, at in draft.status_events:
            message = draft.messages[index]
            if message.pk is None:  # backends that cannot return ids from a bulk insert
                message.pk = Message.objects.get(inbox=message.inbox, provider_id=message.provider_id).pk
            events.append(MessageStatusEvent(
                message=message, provider_id=message.provider_id, status=status, error_code=error_code, received_at=at,
                payload={"MessageSid": message.provider_id, "MessageStatus": status, **({"ErrorCode": error_code} if error_code else {})},
            ))
    MessageStatusEvent.objects.bulk_create(events, batch_size=500)


def seed_demo(*, password: str, now: datetime | None = None) -> SeedResult:
    now = now or timezone.now()
    result = SeedResult()
    with transaction.atomic():
        config = ensure_configuration(password)
        drafts: list[Draft] = []
        new_duplicate = None
        for spec in customer_specs():
            identities = spec_identities(spec)
            if Identity.objects.filter(_identity_q(identities)).exists():
                result.customers_existing += 1
                continue
            customer_drafts = create_customer(spec, config, now)
            drafts.extend(customer_drafts)
            result.customers_created += 1
            if spec.only_email:
                new_duplicate = customer_drafts[0].conversation.customer
        write_drafts(drafts)
        if new_duplicate is not None:
            suggest_same_name_same_domain(customer=new_duplicate)
        lifecycle.demo_seeded.send(sender=seed_demo, now=now, config=config)
    result.counts = summary_counts()
    return result


def _identity_q(identities) -> Q:
    query = Q(pk__in=[])
    for kind, value, _source in identities:
        query |= Q(kind=kind, value=value)
    return query


def summary_counts() -> dict:
    by_channel = dict(Conversation.objects.values_list("channel").annotate(n=Count("id")).order_by())
    by_status = dict(Conversation.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {
        "inboxes": Inbox.objects.count(),
        "queues": Queue.objects.count(),
        "agents": Agent.objects.count(),
        "customers": Customer.objects.count(),
        "conversations": Conversation.objects.count(),
        "conversations_by_channel": by_channel,
        "conversations_by_status": by_status,
        "messages": Message.objects.count(),
        "touchpoints": Touchpoint.objects.count(),
        "pending_merge_suggestions": MergeSuggestion.objects.filter(status=SuggestionStatus.PENDING).count(),
    }
