"""Factories and named users (an agent per queue, a supervisor, an admin, a stranger)."""

import itertools

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from conversations.models import (
    Agent,
    Channel,
    Conversation,
    Direction,
    Inbox,
    Message,
    MessageKind,
    PresenceState,
    Queue,
)
from profiles.models import Customer, Identity, IdentityKind, Touchpoint

_seq = itertools.count(1)
PASSWORD = "test-password-1234"


def make_user(username: str, *, role: str | None, **extra) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def make_agent(username: str, *, role: str = "agent", display_name: str = "", **fields) -> Agent:
    user = make_user(username, role=role, is_staff=role != "agent")
    return Agent.objects.create(user=user, display_name=display_name or username.title(), **fields)


def make_customer(name: str = "", **fields) -> Customer:
    return Customer.objects.create(display_name=name or f"Customer {next(_seq)}", **fields)


def make_identity(customer: Customer, kind: str, value: str, **fields) -> Identity:
    return Identity.objects.create(customer=customer, kind=kind, value=value, **fields)


def make_inbox(kind: str = Channel.SMS, address: str = "", **fields) -> Inbox:
    address = address or {
        Channel.SMS: "+815012340000",
        Channel.WHATSAPP: "+815012340001",
        Channel.EMAIL: "support@shop.example.jp",
        Channel.WEBCHAT: "widget-main",
        Channel.VOICE: "+815012340002",
    }[kind]
    inbox, _ = Inbox.objects.get_or_create(kind=kind, address=address, defaults={"name": f"{kind} inbox", **fields})
    return inbox


def make_conversation(customer: Customer, inbox: Inbox | None = None, **fields) -> Conversation:
    inbox = inbox or make_inbox()
    fields.setdefault("last_message_at", timezone.now())
    return Conversation.objects.create(customer=customer, inbox=inbox, channel=inbox.kind, **fields)


def make_message(conversation: Conversation, text: str = "hello", **fields) -> Message:
    fields.setdefault("direction", Direction.INBOUND)
    fields.setdefault("kind", MessageKind.MESSAGE)
    if "seq" not in fields:
        from conversations.sequence import message_seq_next

        fields["seq"] = message_seq_next(conversation)
    return Message.objects.create(
        conversation=conversation,
        customer_id=conversation.customer_id,
        inbox_id=conversation.inbox_id,
        channel=conversation.channel,
        text=text,
        **fields,
    )


def make_touchpoint(customer: Customer, title: str = "Viewed pricing", **fields) -> Touchpoint:
    fields.setdefault("kind", "page_view")
    return Touchpoint.objects.create(customer=customer, title=title, **fields)


@pytest.fixture
def available_presence(db) -> PresenceState:
    return PresenceState.objects.get_or_create(name="Available", defaults={"is_available": True})[0]


@pytest.fixture
def support_queue(db) -> Queue:
    return Queue.objects.create(name="Support", slug="support")


@pytest.fixture
def agent(db) -> Agent:
    return make_agent("alice", display_name="Alice")


@pytest.fixture
def other_agent(db) -> Agent:
    return make_agent("bob", display_name="Bob")


@pytest.fixture
def supervisor(db) -> Agent:
    return make_agent("carol", role="supervisor", display_name="Carol")


@pytest.fixture
def admin_user(db) -> User:
    return make_user("admin", role="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def stranger(db) -> User:
    """A valid login with no contact-center role: must see nothing."""
    return make_user("mallory", role=None)


@pytest.fixture
def customer(db) -> Customer:
    customer = make_customer("山田 花子", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819012345678", verified=True)
    return customer


__all__ = [
    "PASSWORD",
    "admin_user",
    "agent",
    "available_presence",
    "customer",
    "make_agent",
    "make_conversation",
    "make_customer",
    "make_identity",
    "make_inbox",
    "make_message",
    "make_touchpoint",
    "make_user",
    "other_agent",
    "stranger",
    "supervisor",
    "support_queue",
]
