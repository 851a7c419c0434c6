"""``manage.py seed_demo``: idempotent demo data that covers every channel, role and profile feature."""

import io
import re
from collections import defaultdict
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import Count, F
from django.test import override_settings

from conversations.models import (
    Agent,
    Channel,
    Conversation,
    ConversationStatus,
    Direction,
    Inbox,
    Message,
    MessageKind,
    PresenceState,
    Queue,
    Skill,
)
from profiles import addresses
from profiles.models import (
    Consent,
    Customer,
    CustomerNote,
    Identity,
    JourneyStage,
    MergeSuggestion,
    SuggestionStatus,
    Touchpoint,
)

pytestmark = pytest.mark.django_db

DEMO_PASSWORD = "seed-demo-test-pass-42"
# The default PBKDF2 iterations make each hash take about a second on a slow machine.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _counts() -> dict:
    return {
        "users": User.objects.count(),
        "agents": Agent.objects.count(),
        "inboxes": Inbox.objects.count(),
        "queues": Queue.objects.count(),
        "skills": Skill.objects.count(),
        "presences": PresenceState.objects.count(),
        "customers": Customer.objects.count(),
        "identities": Identity.objects.count(),
        "conversations": Conversation.objects.count(),
        "messages": Message.objects.count(),
        "touchpoints": Touchpoint.objects.count(),
        "notes": CustomerNote.objects.count(),
        "consents": Consent.objects.count(),
        "suggestions": MergeSuggestion.objects.count(),
    }


def _seed() -> str:
    out = io.StringIO()
    with override_settings(CC_DEMO_PASSWORD=DEMO_PASSWORD, PASSWORD_HASHERS=FAST_HASHERS):
        call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.fixture
def seeded(db) -> str:
    return _seed()


def test_running_twice_changes_nothing_and_keeps_the_widget_secret(seeded):
    before = _counts()
    secret = Inbox.objects.get(kind=Channel.WEBCHAT).secret
    assert secret
    output = _seed()
    assert _counts() == before
    assert Inbox.objects.get(kind=Channel.WEBCHAT).secret == secret
    assert "already there" in output


def test_prints_the_users_and_the_demo_password(seeded):
    assert "alice, bob (agents), carol (supervisor), admin (superuser)" in seeded
    assert DEMO_PASSWORD in seeded


def test_users_log_in_with_the_demo_password_and_have_their_roles(seeded):
    with override_settings(PASSWORD_HASHERS=FAST_HASHERS):
        for username, group in [("alice", "agent"), ("bob", "agent"), ("carol", "supervisor"), ("admin", "admin")]:
            user = authenticate(username=username, password=DEMO_PASSWORD)
            assert user is not None, username
            assert list(user.groups.values_list("name", flat=True)) == [group]
            assert authenticate(username=username, password="wrong-password") is None
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    carol = User.objects.get(username="carol")
    assert carol.is_staff and not carol.is_superuser
    assert Agent.objects.filter(user=carol).exists()
    assert set(Agent.objects.values_list("user__username", flat=True)) == {"alice", "bob", "carol"}
    assert set(Agent.objects.values_list("time_zone", flat=True)) == {"Asia/Tokyo"}
    alice = Agent.objects.get(user__username="alice")
    assert set(alice.languages) == {"ja", "en"}
    assert set(alice.skills.values_list("slug", flat=True)) == {"support", "billing", "japanese", "english"}
    assert set(Agent.objects.get(user__username="bob").skills.values_list("slug", flat=True)) == {"sales", "english"}


def test_a_changed_password_is_applied_on_the_next_run(seeded):
    with override_settings(CC_DEMO_PASSWORD="another-demo-pass", PASSWORD_HASHERS=FAST_HASHERS):
        call_command("seed_demo", stdout=io.StringIO())
        assert authenticate(username="bob", password="another-demo-pass") is not None
        assert authenticate(username="bob", password=DEMO_PASSWORD) is None


def test_configuration_inboxes_queues_skills_presences(seeded):
    inboxes = {inbox.kind: inbox for inbox in Inbox.objects.all()}
    assert set(inboxes) == {c.value for c in Channel}
    assert inboxes[Channel.SMS].address.startswith("+8150")
    assert addresses.normalize_phone(inboxes[Channel.SMS].address) == inboxes[Channel.SMS].address
    assert inboxes[Channel.EMAIL].address.startswith("support@")
    queues = {q.slug: q for q in Queue.objects.all()}
    for slug in ("sales", "support", "billing"):
        assert slug in queues
        assert list(queues[slug].required_skills.values_list("slug", flat=True)) == [slug]
        assert queues[slug].channels
    assert {"sales", "support", "billing", "japanese", "english"} <= set(Skill.objects.values_list("slug", flat=True))
    presences = {p.name: p for p in PresenceState.objects.all()}
    assert presences["Available"].is_available and presences["Offline"].is_offline
    assert {"Break", "Lunch"} <= set(presences)


def test_wrap_up_codes_and_canned_responses_in_both_languages(seeded):
    from conversations.models import CannedResponse, WrapUpCode

    assert WrapUpCode.objects.filter(is_active=True).count() >= 5
    languages = set(CannedResponse.objects.values_list("language", flat=True))
    assert {"en", "ja"} <= languages
    assert CannedResponse.objects.filter(text__contains="{customer_name}").exists()


def test_wrap_up_codes_have_a_japanese_label(seeded):
    from django.utils import translation

    from conversations.models import WrapUpCode

    code = WrapUpCode.objects.get(code="order-status")
    assert code.label == "Order status"
    with translation.override("ja"):
        assert code.display_label == "注文状況"


def test_the_readme_names_every_demo_address_a_newcomer_can_write_to():
    """Whoever tries the demo with their own tools (curl, a mail client, a page with the widget)
    finds our numbers, mailbox and widget id in the README, as the demo creates them."""
    from conversations.demo.seed import INBOXES

    from ..conftest import REPO

    readme = (REPO / "README.md").read_text()
    for _kind, _name, address, _queue in INBOXES:
        assert f"`{address}`" in readme, address


def test_customers_japanese_and_english_with_profiles(seeded):
    customers = list(Customer.objects.all())
    assert len(customers) >= 30
    japanese = [c for c in customers if _JAPANESE.search(c.display_name)]
    english = [c for c in customers if not _JAPANESE.search(c.display_name)]
    assert len(japanese) >= 10 and len(english) >= 10
    assert {c.language for c in japanese} == {"ja"}
    assert {c.journey_stage for c in customers} == set(JourneyStage.values)
    assert all(c.custom_attributes.get("plan") and "order_count" in c.custom_attributes for c in customers)
    assert Customer.objects.filter(tags__name="VIP").exists() and Customer.objects.filter(tags__name="wholesale").exists()
    assert CustomerNote.objects.exists() and Consent.objects.exists()
    kinds = set(Identity.objects.values_list("kind", flat=True))
    assert {"phone", "email", "whatsapp", "web_visitor"} <= kinds
    for identity in Identity.objects.filter(kind__in=["phone", "email"]):
        assert addresses.normalize(identity.kind, identity.value) == identity.value
    assert set(Touchpoint.objects.values_list("kind", flat=True)) >= {"page_view", "product_view", "purchase", "app_event"}
    # Japanese customers wrote in Japanese.
    first_inbound = Message.objects.filter(customer=japanese[0], direction=Direction.INBOUND, kind=MessageKind.MESSAGE).first()
    assert _JAPANESE.search(first_inbound.text)


def test_histories_span_channels_and_weeks(seeded):
    assert {Channel.SMS, Channel.EMAIL, Channel.WEBCHAT, Channel.VOICE} <= set(
        Conversation.objects.values_list("channel", flat=True)
    )
    per_customer = defaultdict(set)
    for customer_id, channel in Conversation.objects.values_list("customer_id", "channel"):
        per_customer[customer_id].add(channel)
    assert sum(1 for channels in per_customer.values() if len(channels) >= 3) >= 20
    times = Message.objects.order_by("created_at").values_list("created_at", flat=True)
    assert times.last() - times.first() >= timedelta(weeks=3)
    # Messages copy their conversation's customer, inbox and channel.
    assert not Message.objects.exclude(channel=F("conversation__channel")).exists()
    assert not Message.objects.exclude(customer=F("conversation__customer")).exists()
    assert not Message.objects.exclude(inbox=F("conversation__inbox")).exists()
    assert Message.objects.filter(kind=MessageKind.NOTE, direction=Direction.INTERNAL).exists()
    assert set(Message.objects.filter(kind=MessageKind.EVENT).values_list("event_type", flat=True)) >= {
        "assigned", "resolved", "transferred"
    }
    assert Message.objects.filter(direction=Direction.OUTBOUND, author_agent__user__username="alice").exists()
    assert Message.objects.filter(direction=Direction.OUTBOUND, author_agent__user__username="bob").exists()
    failed = Message.objects.get(delivery_status="failed")
    assert failed.delivery_error_code == "30003" and failed.delivery_error
    assert Message.objects.filter(direction=Direction.OUTBOUND, delivery_status="delivered").exists()


def test_conversation_state_is_consistent(seeded):
    statuses = dict(Conversation.objects.values_list("status").annotate(n=Count("id")).order_by())
    assert statuses[ConversationStatus.RESOLVED] > sum(v for k, v in statuses.items() if k != ConversationStatus.RESOLVED)
    assert statuses.get(ConversationStatus.PENDING)
    waiting = Conversation.objects.filter(status=ConversationStatus.OPEN, assignee__isnull=True)
    assert waiting.count() >= 2
    for conversation in Conversation.objects.prefetch_related("messages"):
        messages = list(conversation.messages.all())
        assert messages, conversation
        assert conversation.created_at <= messages[0].created_at
        visible = [m for m in messages if m.kind != MessageKind.EVENT]
        assert conversation.last_message_at == visible[-1].created_at
        if conversation.status == ConversationStatus.RESOLVED:
            assert conversation.resolved_at and conversation.resolved_at >= visible[-1].created_at
            assert conversation.assignee_id
        else:
            assert conversation.resolved_at is None
        if conversation.first_response_at:
            assert conversation.first_response_at >= messages[0].created_at
    for conversation in waiting:
        assert conversation.queue_id and conversation.waiting_since
        assert not conversation.messages.filter(direction=Direction.OUTBOUND).exists()


def test_one_pair_waits_as_a_merge_suggestion(seeded):
    pending = MergeSuggestion.objects.filter(status=SuggestionStatus.PENDING)
    assert pending.count() == 1
    suggestion = pending.get()
    assert suggestion.customer.display_name == suggestion.candidate.display_name
    assert suggestion.evidence.get("domain") and suggestion.evidence.get("matched_email")
    assert suggestion.customer.conversations.count() > suggestion.candidate.conversations.count() >= 1
