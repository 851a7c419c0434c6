"""Fixtures for the survey tests: a policy, one definition per kind, and a resolved contact per
channel that an agent answered (what a survey is owed to)."""

import itertools
from datetime import time

import pytest
from django.utils import timezone

from conversations.models import Channel, ConversationStatus, Direction, Queue, WrapUpCode
from profiles.models import Identity, IdentityKind
from surveys.models import SurveyDefinition, SurveyKind, SurveyPolicy

from ..factories import make_conversation, make_customer, make_identity, make_inbox, make_message

ADDRESS = {Channel.SMS: (IdentityKind.PHONE, "+819012345678"), Channel.WHATSAPP: (IdentityKind.WHATSAPP, "+819012345678"),
           Channel.EMAIL: (IdentityKind.EMAIL, "hanako@example.jp"), Channel.VOICE: (IdentityKind.PHONE, "+819012345678"),
           Channel.WEBCHAT: (IdentityKind.WEB_VISITOR, "f" * 64)}
_numbers = itertools.count(1)


@pytest.fixture
def care_queue(db) -> Queue:
    queue = Queue.objects.create(name="Customer care", slug="customer-care", wrap_up_required=True)
    for code, label in (("called-back", "Called back"), ("refunded", "Refunded"), ("no-action", "No action")):
        WrapUpCode.objects.create(code=code, label=label)
    return queue


@pytest.fixture
def policy(db, care_queue) -> SurveyPolicy:
    return SurveyPolicy.objects.create(quiet_start=time(20, 0), quiet_end=time(9, 0), follow_up_queue=care_queue)


@pytest.fixture
def csat(db) -> SurveyDefinition:
    return SurveyDefinition.objects.create(
        name="CSAT", kind=SurveyKind.CSAT, question_en="How satisfied were you with our help?",
        question_ja="今回の対応にどのくらい満足されましたか？", follow_up_en="Why?", follow_up_ja="理由をお聞かせください。")


@pytest.fixture
def resolved_contact(db, agent):
    """``resolved_contact(channel, **customer_fields)``: a customer's conversation on ``channel``
    with their message and the agent's reply, resolved (not scheduled: tests call the services)."""

    def make(channel=Channel.SMS, *, customer=None, inbox=None, reply=True, **customer_fields):
        customer = customer or make_customer("Hanako Yamada", time_zone="Asia/Tokyo", **customer_fields)
        kind, value = ADDRESS[channel]
        if not customer.identities.filter(kind=kind).exists():
            if Identity.objects.filter(kind=kind, value=value).exists():  # one address per customer
                n = next(_numbers)
                value = f"+8190{n:08d}" if value.startswith("+") else f"c{n}-{value}" if "@" in value else f"{n:064x}"
            make_identity(customer, kind, value, verified=True)
        inbox = inbox or make_inbox(channel)
        now = timezone.now()
        conversation = make_conversation(customer, inbox, assignee=agent, status=ConversationStatus.RESOLVED,
                                         resolved_at=now)
        make_message(conversation, "help please")
        if reply:
            make_message(conversation, "Here is the answer", direction=Direction.OUTBOUND, author_agent=agent)
        return conversation

    return make
