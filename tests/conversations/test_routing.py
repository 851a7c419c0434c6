"""Routing (issue 4): eligibility, order, offers, triggers, manual control, position."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import (
    Agent,
    Conversation,
    EventType,
    Message,
    Offer,
    Queue,
    RoutingRule,
)
from conversations.services import InboundMessage, message_receive
from conversations.routing.offers import RoutingError, offer_accept, offer_reject
from conversations.routing.presence import agent_presence_set, offers_expire
from conversations.routing.assignment import (
    conversation_abandon,
    conversation_assign,
    conversation_pick,
    conversation_resolve,
    conversation_transfer,
)
from conversations.routing.position import queue_position
from conversations.routing.decisions import route_conversation, route_for_agent, route_waiting
from profiles.models import Tag

from ..factories import make_agent, make_conversation, make_customer, make_inbox
from .routing_helpers import staff, waiting

pytestmark = pytest.mark.django_db


def test_offer_goes_to_an_available_agent_with_the_skills_and_capacity(support, presence):
    staff("nobody-skilled", presence["available"])
    staff("on-break", presence["break"], "support")
    full = staff("full", presence["available"], "support", capacity={"sms": 1})
    make_conversation(make_customer(), make_inbox("sms"), assignee=full, status="open")
    right = staff("right", presence["available"], "support")
    conversation = waiting()
    decision = route_conversation(conversation_id=conversation.pk)
    assert decision.offer.agent == right and decision.offer.status == "pending"
    assert decision.offer.expires_at > timezone.now()
    conversation.refresh_from_db()
    assert conversation.queue == support and conversation.queued_at is not None
    assert decision.explanation["candidates"] == [right.pk] and decision.explanation["rule"] == "default queue"
    assert Message.objects.filter(conversation=conversation, event_type=EventType.OFFERED).exists()
    # Routing again does nothing: one pending offer per conversation.
    assert route_conversation(conversation_id=conversation.pk).offer is None
    assert Offer.objects.count() == 1


def test_longest_idle_first_with_deterministic_ties(support, presence):
    now = timezone.now()
    recent = staff("recent", presence["available"], "support", last_assigned_at=now - timedelta(minutes=1))
    idle = staff("idle", presence["available"], "support", last_assigned_at=now - timedelta(hours=1))
    never_a = staff("never-a", presence["available"], "support", presence_changed_at=now - timedelta(minutes=5))
    never_b = staff("never-b", presence["available"], "support", presence_changed_at=now - timedelta(minutes=5))
    order = [route_conversation(conversation_id=waiting().pk).offer.agent for _ in range(4)]
    assert order == [never_a, never_b, idle, recent]


def test_known_agent_first_within_the_step_then_the_queue(support, presence):
    customer = make_customer()
    known = staff("known", presence["available"], "support", capacity={"sms": 1})
    other = staff("other", presence["available"], "support")
    make_conversation(customer, make_inbox("email"), assignee=known, assigned_at=timezone.now() - timedelta(days=2),
                      status="resolved")
    first = waiting(customer=customer)
    assert route_conversation(conversation_id=first.pk).offer.agent == known
    assert Offer.objects.get(conversation=first).step == "known_agent"
    # Known agent now full: the next conversation waits for them during the step…
    second = waiting(customer=customer)
    assert route_conversation(conversation_id=second.pk).offer is None
    second.refresh_from_db()
    assert "known agent" in second.routing_note
    # …and falls through to the queue once the step's timeout has passed.
    Conversation.objects.filter(pk=second.pk).update(queued_at=timezone.now() - timedelta(seconds=31))
    assert route_conversation(conversation_id=second.pk).offer.agent == other


def test_a_decision_looks_past_the_longest_idle_agents_who_are_full_and_finds_the_known_agent_anywhere(
        support, presence):
    """A decision asks the database for the first few agents with room (ELIGIBLE_LIMIT): agents
    without room are passed over however many of them come first, and the known agent comes
    first however recently they worked."""
    from conversations.routing.eligibility import ELIGIBLE_LIMIT

    now = timezone.now()
    idle = [staff(f"idle-{i}", presence["available"], "support", capacity={"sms": 1},
                  last_assigned_at=now - timedelta(hours=5, minutes=i)) for i in range(ELIGIBLE_LIMIT + 2)]
    for agent in idle:  # the longest idle are all full
        make_conversation(make_customer(), make_inbox("sms"), assignee=agent, status="open")
    busy_but_free = staff("recent", presence["available"], "support", last_assigned_at=now - timedelta(minutes=1))
    known = staff("known", presence["available"], "support", last_assigned_at=now)
    assert route_conversation(conversation_id=waiting(support).pk).offer.agent == busy_but_free
    customer = make_customer()
    make_conversation(customer, make_inbox("email"), assignee=known, assigned_at=now - timedelta(days=1),
                      status="resolved")
    offer = route_conversation(conversation_id=waiting(support, customer=customer).pk).offer
    assert (offer.agent, offer.step) == (known, "known_agent")


def test_rules_pick_the_queue_first_match_wins(support, presence):
    vip_queue = Queue.objects.create(name="VIP", slug="vip")
    RoutingRule.objects.create(name="VIP SMS", order=1, expression='channel == "sms" and "VIP" in tags', queue=vip_queue)
    RoutingRule.objects.create(name="all SMS", order=2, expression='channel == "sms"', queue=support)
    staff("any", presence["available"], "support")
    vip = make_customer()
    vip.tags.add(Tag.objects.create(name="VIP"))
    conversation = waiting(customer=vip)
    decision = route_conversation(conversation_id=conversation.pk)
    conversation.refresh_from_db()
    assert conversation.queue == vip_queue and decision.explanation["rule"] == "VIP SMS"
    plain = waiting()
    route_conversation(conversation_id=plain.pk)
    plain.refresh_from_db()
    assert plain.queue == support


def test_an_inbound_conversation_is_placed_by_the_rules_when_it_opens_not_by_its_inbox(support, presence):
    """The rules decide for a real contact too, although its inbox has a default queue: a known VIP
    texting the support number goes to the VIP queue, a billing subject by email to billing. The
    conversation is queued from its first moment, says why, and its offer explains it."""
    from profiles.services.identity import identity_resolve

    vip_queue = Queue.objects.create(name="VIP", slug="vip")
    billing = Queue.objects.create(name="Billing", slug="billing")
    RoutingRule.objects.create(name="VIP", order=1, expression='"VIP" in tags', queue=vip_queue)
    RoutingRule.objects.create(name="Billing subjects", order=2, expression='"invoice" in subject', queue=billing)
    sms, email = make_inbox("sms", default_queue=support), make_inbox("email", default_queue=support)
    vip = identity_resolve(kind="phone", value="090-1111-2222").customer
    vip.tags.add(Tag.objects.create(name="VIP"))
    agent = staff("any", presence["available"], "support")

    from_vip = message_receive(InboundMessage(inbox=sms, sender_kind="phone", sender_address="090-1111-2222",
                                              text="hello", provider_id="SMvip")).conversation
    from_stranger = message_receive(InboundMessage(inbox=sms, sender_kind="phone", sender_address="090-3333-4444",
                                                   text="hello", provider_id="SMnew")).conversation
    about_money = message_receive(InboundMessage(inbox=email, sender_kind="email", sender_address="a@example.jp",
                                                 subject="Your invoice #12", text="?", provider_id="<m1@example.jp>")
                                  ).conversation
    placed = {c.pk: (c.queue_id, c.queue_reason, c.queued_at is not None)
              for c in Conversation.objects.filter(pk__in=[from_vip.pk, from_stranger.pk, about_money.pk])}
    assert placed == {from_vip.pk: (vip_queue.pk, "VIP", True), from_stranger.pk: (support.pk, "inbox default", True),
                      about_money.pk: (billing.pk, "Billing subjects", True)}
    decision = route_conversation(conversation_id=from_vip.pk)
    assert decision.offer.agent_id == agent.pk and decision.offer.queue_id == vip_queue.pk
    assert decision.explanation["rule"] == "VIP" and decision.explanation["queue"] == "vip"


def test_placement_skips_inactive_rules_and_queues_and_falls_back_in_order(support):
    """queue_pick's reads, written as SQL: an inactive rule, or a rule whose queue is inactive,
    never places; rules of equal order go by id; without a match the inbox's queue if active, else
    the queue marked default if active, else none."""
    from conversations.routing.placement import queue_pick

    closed = Queue.objects.create(name="Closed", slug="closed", is_active=False)
    first = Queue.objects.create(name="First", slug="first")
    second = Queue.objects.create(name="Second", slug="second")
    RoutingRule.objects.create(name="off", order=1, expression='channel == "sms"', queue=first, is_active=False)
    RoutingRule.objects.create(name="to a closed queue", order=1, expression='channel == "sms"', queue=closed)
    RoutingRule.objects.create(name="tie, older", order=2, expression='channel == "sms"', queue=first)
    RoutingRule.objects.create(name="tie, newer", order=2, expression='channel == "sms"', queue=second)
    conversation = make_conversation(make_customer(), make_inbox("sms", default_queue=support))
    assert queue_pick(conversation) == {"rule": "tie, older", "rule_id": RoutingRule.objects.get(name="tie, older").pk}
    assert conversation.queue == first and conversation.queue.slug == "first"

    RoutingRule.objects.all().delete()
    default = Queue.objects.create(name="Default", slug="default", is_default=True)
    assert queue_pick(conversation) == {"rule": "inbox default"} and conversation.queue == support
    Queue.objects.filter(pk=support.pk).update(is_active=False)
    assert queue_pick(conversation) == {"rule": "default queue"} and conversation.queue == default
    Queue.objects.filter(pk=default.pk).update(is_active=False)
    assert queue_pick(conversation) == {"rule": "no queue"} and conversation.queue is None
    without_inbox_queue = make_conversation(make_customer(), make_inbox("sms"))
    Queue.objects.filter(pk=default.pk).update(is_active=True)
    assert queue_pick(without_inbox_queue) == {"rule": "default queue"} and without_inbox_queue.queue == default


def test_a_rule_about_tags_reads_them_only_when_a_rule_asks(support, presence, django_assert_num_queries):
    """Placing a conversation costs the rules' read; the customer's tags are read only when some
    rule is about tags (and never for a customer created by the same message)."""
    from conversations.routing.placement import queue_pick

    inbox = make_inbox("sms", default_queue=support)
    RoutingRule.objects.create(name="SMS", order=1, expression='channel == "sms"', queue=support)  # matches
    conversation = make_conversation(make_customer(), inbox)
    with django_assert_num_queries(1):
        queue_pick(conversation)
    RoutingRule.objects.create(name="VIP", order=2, expression='"VIP" in tags', queue=support)
    with django_assert_num_queries(2):
        queue_pick(conversation)
    with django_assert_num_queries(1):
        queue_pick(conversation, tags=[])


def test_invalid_rule_is_rejected_on_save_with_the_reason(support):
    from django.core.exceptions import ValidationError

    rule = RoutingRule(name="bad", expression="__import__('os').system('x')", queue=support)
    with pytest.raises(ValidationError) as excinfo:
        rule.full_clean()
    assert "expression" in excinfo.value.message_dict


def test_accept_assigns_and_reject_or_timeout_moves_to_the_next_agent(support, presence):
    first = staff("first", presence["available"], "support")
    second = staff("second", presence["available"], "support")
    conversation = waiting()
    offer = route_conversation(conversation_id=conversation.pk).offer
    assert offer.agent == first
    with pytest.raises(RoutingError):
        offer_accept(offer_id=offer.pk, agent=second)
    offer_reject(offer_id=offer.pk, agent=first)
    nxt = route_conversation(conversation_id=conversation.pk).offer
    assert nxt.agent == second
    Offer.objects.filter(pk=nxt.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert offers_expire() == 1
    nxt.refresh_from_db()
    second.refresh_from_db()
    assert nxt.status == "timeout"
    assert not second.presence.is_available and second.presence.name == "Missed offer"
    # Both refused recently: it waits (nobody else), and is accepted when offered again later.
    third = staff("third", presence["available"], "support")
    final = route_conversation(conversation_id=conversation.pk).offer
    assert final.agent == third
    offer_accept(offer_id=final.pk, agent=third)
    conversation.refresh_from_db()
    assert conversation.assignee == third and conversation.assigned_at is not None
    with pytest.raises(RoutingError):
        offer_accept(offer_id=final.pk, agent=third)


def test_accepting_an_offer_too_late_times_it_out_for_good_and_offers_it_to_the_next_agent(
        support, presence, django_capture_on_commit_callbacks, monkeypatch):
    """The agent is told it timed out, and that is committed: the offer does not stay pending
    until the tick, and routing goes on to the next agent at once. The agent did answer, so they
    keep their presence."""
    from conversations.tasks import route_conversation_task

    late = staff("late", presence["available"], "support")
    conversation = waiting()
    offer = route_conversation(conversation_id=conversation.pk).offer
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    routed = []
    monkeypatch.setattr(route_conversation_task, "apply_async", lambda args=(), **kw: routed.append(args[0]))
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RoutingError) as refused:
        offer_accept(offer_id=offer.pk, agent=late)
    assert refused.value.code == "offer_timeout"
    offer.refresh_from_db()
    late.refresh_from_db()
    assert offer.status == "timeout" and offer.decided_at is not None
    assert routed == [conversation.pk]
    assert late.presence == presence["available"]
    outcome = Message.objects.get(conversation=conversation, event_type=EventType.OFFERED, event_data__outcome="timeout")
    assert outcome.author_agent_id == late.pk and outcome.event_data["offer"] == offer.pk


def test_resolving_records_the_offer_outcome_then_the_resolution_in_order(support, presence):
    """Resolving while an offer is pending cancels it: its event comes first on the timeline, then
    the resolution, with consecutive sequence numbers (written together, system_events_record)."""
    agent = staff("agent", presence["available"], "support")
    conversation = waiting()
    offer = route_conversation(conversation_id=conversation.pk).offer
    conversation_resolve(conversation_id=conversation.pk, by=None)
    events = list(Message.objects.filter(conversation=conversation).order_by("seq")
                  .values_list("seq", "event_type", "event_data", "author_agent_id"))
    assert [e[0] for e in events] == [1, 2, 3]
    assert events[1][1:] == (EventType.OFFERED, {"offer": offer.pk, "outcome": "canceled"}, agent.pk)
    assert events[2][1] == EventType.RESOLVED
    conversation.refresh_from_db()
    assert conversation.last_seq == 3 and conversation.status == "resolved" and conversation.waiting_since is None


def test_an_agent_who_just_turned_it_down_is_not_offered_it_again_even_from_a_stale_list(
        support, presence, monkeypatch):
    """The candidates a decision tries can be a moment old (read with the conversation's lock): the
    offer's own statement refuses an agent who turned the conversation down since."""
    import dataclasses

    from conversations.routing.sql import Candidate
    from conversations.routing import decisions as routing

    refuser = staff("refuser", presence["available"], "support")
    other = staff("other", presence["available"], "support")
    conversation = waiting()
    offer_reject(offer_id=route_conversation(conversation_id=conversation.pk).offer.pk, agent=refuser)
    stale = [Candidate(pk=refuser.pk, load=0, capacity=5), Candidate(pk=other.pk, load=0, capacity=5)]
    real_lock = routing.waiting_conversation_lock

    def lock_with_stale_candidates(conversation_id, now, **kwargs):
        # The stale list alone, every agent of it locked by its own statement (no agent locked
        # with the conversation), so that the refuser reaches the offer's statement.
        conversation, facts = real_lock(conversation_id, now)
        return conversation, dataclasses.replace(facts, candidates=tuple(stale), candidates_queue_id=support.pk,
                                                 locked_candidate=None)

    monkeypatch.setattr(routing, "waiting_conversation_lock", lock_with_stale_candidates)
    monkeypatch.setattr(routing, "eligible_agents", lambda **kwargs: list(stale))  # SQLite asks separately
    assert route_conversation(conversation_id=conversation.pk).offer.agent == other
    assert not Offer.objects.filter(conversation=conversation, agent=refuser, status="pending").exists()


def test_the_candidates_read_with_the_lock_are_exactly_the_eligible_agents(support, presence):
    """PostgreSQL reads a decision's candidates in the lock statement (a round trip fewer);
    eligible_agents() is the same question on its own. Both must answer alike: skills, presence,
    room (held conversations, pending offers, capacity and the channel's default), refusals,
    order and limit."""
    from django.db import connection, transaction

    from conversations.routing.eligibility import ELIGIBLE_LIMIT, eligible_agents
    from conversations.routing.selection import waiting_conversation_lock

    if connection.vendor != "postgresql":
        pytest.skip("production mode only (PostgreSQL + Redis): run by `make test`")
    now = timezone.now()
    staff("no-skill", presence["available"])
    staff("on-break", presence["break"], "support")
    full = staff("full", presence["available"], "support", capacity={"sms": 1})
    make_conversation(make_customer(), make_inbox("sms"), assignee=full, status="open")
    offered = staff("offered", presence["available"], "support", capacity={"sms": 1})
    staff("default-capacity", presence["available"], "support", capacity={"chat": 1})  # sms: the default
    refuser = staff("refuser", presence["available"], "support")
    for i in range(ELIGIBLE_LIMIT + 3):
        staff(f"idle-{i}", presence["available"], "support", last_assigned_at=now - timedelta(minutes=i))
    conversation = waiting(support)
    Offer.objects.create(conversation=waiting(support), agent=offered, queue=support, channel="sms")
    Offer.objects.create(conversation=conversation, agent=refuser, queue=support, channel="sms", status="rejected",
                         decided_at=now)
    with transaction.atomic():
        _locked, facts = waiting_conversation_lock(conversation.pk, now)
        expected = eligible_agents(queue=support, channel="sms", conversation_id=conversation.pk, now=now)
    assert facts.candidates_queue_id == support.pk
    assert list(facts.candidates) == expected
    names = {a.pk: a.user.username for a in Agent.objects.select_related("user")}
    assert len(expected) == ELIGIBLE_LIMIT and names[expected[0].pk] == "default-capacity"
    assert not {"no-skill", "on-break", "full", "offered", "refuser"} & {names[c.pk] for c in expected}


def test_auto_accept_assigns_directly(support, presence):
    support.auto_accept = True
    support.save()
    agent = staff("auto", presence["available"], "support")
    conversation = waiting()
    decision = route_conversation(conversation_id=conversation.pk)
    conversation.refresh_from_db()
    assert decision.assigned and conversation.assignee == agent


def test_waiting_conversations_go_out_by_priority_then_age(support, presence):
    old = waiting(support, age_seconds=300)
    urgent = waiting(support, priority=5, age_seconds=10)
    newer = waiting(support, age_seconds=100)
    agent = staff("solo", presence["break"], "support", capacity={"sms": 3})
    agent_presence_set(agent=agent, presence=presence["available"])
    route_for_agent(agent_id=agent.pk)
    offers = list(Offer.objects.order_by("created_at", "id").values_list("conversation_id", flat=True))
    assert offers == [urgent.pk, old.pk, newer.pk]


def test_going_offline_rescinds_offers_and_they_go_to_the_next_agent(support, presence):
    leaving = staff("leaving", presence["available"], "support")
    conversation = waiting()
    offer = route_conversation(conversation_id=conversation.pk).offer
    assert offer.agent == leaving
    staying = staff("staying", presence["available"], "support")
    agent_presence_set(agent=leaving, presence=presence["offline"])
    offer.refresh_from_db()
    assert offer.status == "rescinded"
    assert route_conversation(conversation_id=conversation.pk).offer.agent == staying


def test_customer_leaving_cancels_routing_and_counts_as_abandoned(support, presence):
    staff("a", presence["available"], "support")
    conversation = waiting()
    offer = route_conversation(conversation_id=conversation.pk).offer
    assert conversation_abandon(conversation_id=conversation.pk, reason="widget closed")
    offer.refresh_from_db()
    conversation.refresh_from_db()
    assert offer.status == "canceled" and conversation.abandoned_at is not None
    assert route_conversation(conversation_id=conversation.pk).offer is None


def test_resolve_requires_wrap_up_when_configured_and_frees_capacity(support, presence, django_capture_on_commit_callbacks):
    support.wrap_up_required = True
    support.save()
    agent = staff("busy", presence["available"], "support", capacity={"sms": 1})
    first = waiting()
    offer_accept(offer_id=route_conversation(conversation_id=first.pk).offer.pk, agent=agent)
    second = waiting()
    assert route_conversation(conversation_id=second.pk).offer is None  # full
    with pytest.raises(RoutingError, match="wrap-up"):
        conversation_resolve(conversation_id=first.pk, by=agent)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        conversation_resolve(conversation_id=first.pk, by=agent, wrap_up_code="refund", note="sent")
    assert callbacks  # route_for_agent is queued after commit
    assert route_for_agent(agent_id=agent.pk) == 1
    assert Offer.objects.get(conversation=second, status="pending").agent == agent


def test_closed_queue_keeps_the_conversation_queued_and_says_so_once(support, presence):
    support.business_hours = {"time_zone": "Asia/Tokyo", "weekly": {}, "holidays": []}
    support.after_hours_message = ""
    support.save()
    staff("a", presence["available"], "support")
    conversation = waiting()
    decision = route_conversation(conversation_id=conversation.pk)
    assert decision.offer is None and "closed" in decision.reason
    route_conversation(conversation_id=conversation.pk)
    assert Message.objects.filter(conversation=conversation, event_data__step="after_hours").count() == 1


CLOSED_ALL_WEEK = {"time_zone": "Asia/Tokyo", "weekly": {"mon": [["09:00", "18:00"]]}, "holidays": []}


def test_closed_queue_with_the_fallback_turns_the_contact_into_an_email_follow_up(support, presence):
    """Voicemail / email fallback on a closed queue: the customer is told when we open and where
    the answer will go (their email), the conversation moves to the follow-up queue and is
    offered there, and leaving no longer cancels it."""
    from conversations.models import Direction
    from profiles.models import IdentityKind

    from ..factories import make_identity

    email_team = Queue.objects.create(name="Email team", slug="email-team")
    support.business_hours = CLOSED_ALL_WEEK
    support.after_hours_action = "voicemail"
    support.after_hours_fallback_queue = email_team
    support.after_hours_message = "We open at {opens}. We will answer by email at {reply_to}."
    support.save()
    back_office = staff("back-office", presence["available"])  # no skills: only the email team fits
    result = message_receive(InboundMessage(inbox=make_inbox("sms"), sender_kind="phone",
                                            sender_address="090-1111-2222", text="Is my order late?",
                                            provider_id="SMlate"))
    conversation = result.conversation
    make_identity(conversation.customer, IdentityKind.EMAIL, "hana@example.jp", verified=True)

    decision = route_conversation(conversation_id=conversation.pk)
    conversation.refresh_from_db()
    assert "closed" in decision.reason and decision.explanation["after_hours_fallback_to"] == email_team.pk
    assert conversation.queue == email_team and conversation.follow_up_channel == "email"
    assert conversation.follow_up_at is not None and conversation.queue_reason == "after-hours fallback from support"
    told = Message.objects.get(conversation=conversation, direction=Direction.OUTBOUND)
    assert told.text.startswith("We open at 20") and told.text.endswith("by email at hana@example.jp.")
    assert Message.objects.filter(conversation=conversation, event_type=EventType.TRANSFERRED,
                                  event_data__reason="after_hours").exists()

    # The follow-up queue is open: its agents get it (here the worker's job, run by hand).
    assert route_conversation(conversation_id=conversation.pk).offer.agent == back_office
    # The customer hanging up / closing the chat does not cancel a promised follow-up.
    assert not conversation_abandon(conversation_id=conversation.pk, reason="widget closed")
    conversation.refresh_from_db()
    assert conversation.abandoned_at is None


def test_fallback_without_a_follow_up_queue_waits_for_the_opening_and_tells_the_customer_once(support, presence):
    support.business_hours = CLOSED_ALL_WEEK
    support.after_hours_action = "voicemail"
    support.after_hours_message = "Closed until {opens}{bad}."  # an admin's typo: sent as written
    support.save()
    from profiles.models import IdentityKind

    from ..factories import make_identity

    staff("a", presence["available"], "support")
    conversation = waiting(support)
    make_identity(conversation.customer, IdentityKind.PHONE, "+819011112222")
    for _attempt in range(3):
        assert route_conversation(conversation_id=conversation.pk).offer is None
    conversation.refresh_from_db()
    assert conversation.queue == support and conversation.follow_up_channel == "sms"  # no email known
    assert list(Message.objects.filter(conversation=conversation, direction="outbound").values_list("text", flat=True)) \
        == ["Closed until {opens}{bad}."]
    assert Message.objects.filter(conversation=conversation, event_data__step="after_hours").count() == 1


def test_keep_queued_action_leaves_leaving_customers_abandoned(support, presence):
    support.business_hours = CLOSED_ALL_WEEK
    support.save()
    conversation = waiting(support)
    route_conversation(conversation_id=conversation.pk)
    conversation.refresh_from_db()
    assert conversation.follow_up_at is None
    assert conversation_abandon(conversation_id=conversation.pk, reason="hung up")


def test_a_queue_cannot_fall_back_to_itself(support):
    from django.core.exceptions import ValidationError

    support.after_hours_fallback_queue = support
    with pytest.raises(ValidationError, match="empty"):
        support.full_clean()


def test_overflow_moves_to_the_overflow_queue_after_n_seconds(support, presence):
    overflow = Queue.objects.create(name="Overflow", slug="overflow")
    support.overflow_queue = overflow
    support.overflow_after_seconds = 60
    support.save()
    generalist = staff("generalist", presence["available"])  # no skills: only the overflow queue fits
    conversation = waiting(support, age_seconds=61)
    decision = route_conversation(conversation_id=conversation.pk)
    conversation.refresh_from_db()
    assert conversation.queue == overflow and decision.offer.agent == generalist
    # Routing explained: where it overflowed from (it named the overflow queue itself).
    assert decision.explanation["overflow_from"] == support.pk and decision.explanation["queue"] == "overflow"
    assert conversation.queue_reason == "overflow from support"


def test_an_overflow_queue_must_take_every_channel_of_the_queue_overflowing_into_it(support):
    from django.core.exceptions import ValidationError

    sms_only = Queue.objects.create(name="SMS team", slug="sms-team", channels=["sms"])
    support.overflow_queue, support.overflow_after_seconds = sms_only, 60
    with pytest.raises(ValidationError) as refused:  # support takes every channel
        support.full_clean()
    assert "SMS team does not take" in refused.value.message_dict["overflow_queue"][0]
    assert "Email" in refused.value.message_dict["overflow_queue"][0]
    support.channels = ["sms"]
    support.full_clean()
    support.save()
    # Narrowing the overflow queue afterwards would strand what overflows into it: refused too.
    sms_only.channels = ["whatsapp"]
    with pytest.raises(ValidationError) as refused:
        sms_only.full_clean()
    assert "Support overflows into this queue with SMS conversations" in refused.value.message_dict["channels"][0]
    sms_only.channels = []  # every channel: fine
    sms_only.full_clean()


def test_a_conversation_stays_put_when_its_overflow_queue_cannot_take_it_any_more(support, presence):
    """Validation keeps this from being configured; a queue deactivated (or changed outside the
    admin) since must not swallow conversations, nor make the tick retry them in a loop."""
    from conversations.routing.decisions import WAITING_RETRY

    overflow = Queue.objects.create(name="Overflow", slug="overflow")
    support.overflow_queue, support.overflow_after_seconds = overflow, 60
    support.save()
    staff("generalist", presence["available"])  # only the overflow queue would fit
    for change, why in (({"is_active": False}, "overflow queue overflow is inactive"),
                        ({"is_active": True, "channels": ["email"]}, "overflow queue overflow does not take sms")):
        Queue.objects.filter(pk=overflow.pk).update(**change)
        conversation = waiting(support, age_seconds=61)
        decision = route_conversation(conversation_id=conversation.pk)
        conversation.refresh_from_db()
        assert decision.offer is None and conversation.queue == support
        assert decision.explanation["overflow_refused"] == why
        assert not Message.objects.filter(conversation=conversation, event_type=EventType.TRANSFERRED).exists()
        # The next try is the ordinary retry, not the overflow time that already passed.
        assert conversation.route_at > timezone.now() + WAITING_RETRY - timedelta(seconds=5)


def test_manual_assign_pick_and_transfer_with_a_handoff_note(support, presence):
    supervisor = staff("boss", presence["available"])
    alice = staff("alice", presence["available"], "support")
    bob = staff("bob", presence["available"], "support")
    conversation = waiting(support)
    conversation_pick(conversation_id=conversation.pk, agent=alice)
    with pytest.raises(RoutingError):
        conversation_pick(conversation_id=conversation.pk, agent=bob)
    conversation_transfer(conversation_id=conversation.pk, by=alice, to_agent=bob, note="Refund approved; send label")
    conversation.refresh_from_db()
    assert conversation.assignee == bob
    transfer = Message.objects.filter(conversation=conversation, event_type=EventType.TRANSFERRED).latest("id")
    assert transfer.event_data["note"] == "Refund approved; send label"
    conversation_assign(conversation_id=conversation.pk, agent=alice, by=supervisor)
    conversation.refresh_from_db()
    assert conversation.assignee == alice
    conversation_transfer(conversation_id=conversation.pk, by=alice, to_queue=support, note="needs billing")
    conversation.refresh_from_db()
    assert conversation.assignee is None and conversation.queue == support
    assert conversation.queue_reason == f"transferred by {alice.display_name}"


def test_queue_position_and_estimated_wait(support):
    now = timezone.now()
    for minutes in (2, 4, 6):
        answered = now - timedelta(minutes=10) + timedelta(minutes=minutes)
        make_conversation(make_customer(), make_inbox("sms"), queue=support, queued_at=now - timedelta(minutes=10),
                          answered_at=answered, assigned_at=answered, assignee=make_agent(f"a{minutes}"))
    # Answered within a minute, then handed to a colleague an hour later: its wait was a minute.
    make_conversation(make_customer(), make_inbox("sms"), queue=support, queued_at=now - timedelta(minutes=70),
                      answered_at=now - timedelta(minutes=69), assigned_at=now, assignee=make_agent("later"))
    first = waiting(support, age_seconds=50)
    second = waiting(support, age_seconds=20)
    # Median of 1, 2, 4 and 6 min (the upper middle): 4 min; not stretched by the hand-off's 70.
    assert queue_position(conversation=first) == {"position": 1, "ahead": 0, "estimated_wait_seconds": 240}
    assert queue_position(conversation=second) == {"position": 2, "ahead": 1, "estimated_wait_seconds": 480}


def test_tick_routes_waiting_conversations_nobody_enqueued(support, presence, monkeypatch):
    from conversations.tasks import route_conversation_task

    queued = []
    monkeypatch.setattr(route_conversation_task, "apply_async", lambda args=(), **kw: queued.append(args[0]))
    lost = waiting(support)
    offered = waiting(support)
    staff("a", presence["available"], "support")
    route_conversation(conversation_id=offered.pk)
    assert route_waiting() == 1 and queued == [lost.pk]


@pytest.mark.django_db(transaction=True)
def test_new_inbound_message_is_routed_through_the_worker(support, presence, celery_worker):
    from ..conftest import wait_for

    agent = staff("ready", presence["available"], "support")
    result = message_receive(InboundMessage(inbox=make_inbox("sms"), sender_kind="phone",
                                            sender_address="090-1234-5678", text="help", provider_id="SMroute"))
    offer = wait_for(lambda: Offer.objects.filter(conversation=result.conversation).first())
    assert offer.agent == agent


@pytest.mark.django_db(transaction=True)
def test_agent_becoming_available_gets_waiting_work_through_the_worker(support, presence, celery_worker):
    from ..conftest import wait_for

    conversation = waiting(support)
    agent = staff("late", presence["break"], "support")
    assert route_conversation(conversation_id=conversation.pk).offer is None
    agent_presence_set(agent=agent, presence=presence["available"])
    offer = wait_for(lambda: Offer.objects.filter(conversation=conversation).first())
    assert offer.agent == agent


def test_sms_customer_who_must_wait_is_told_their_position_once(support, presence):
    from conversations.models import Direction

    inbox = make_inbox("sms", settings={"queue_auto_reply": "ただいま{position}番目です（約{wait_minutes}分）。"})
    ahead = make_conversation(make_customer(), inbox, queue=support)
    Conversation.objects.filter(pk=ahead.pk).update(queued_at=timezone.now() - timedelta(minutes=1))
    result = message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-1234-5678",
                                            text="まだですか", provider_id="SMwait"))
    route_conversation(conversation_id=result.conversation.pk)
    route_conversation(conversation_id=result.conversation.pk)
    replies = Message.objects.filter(conversation=result.conversation, direction=Direction.OUTBOUND)
    assert [m.text for m in replies] == ["ただいま2番目です（約?分）。"]


def test_offline_agent_conversations_go_back_to_the_queue_after_the_grace(support, presence, monkeypatch):
    from conversations.routing.assignment import offline_requeue
    from conversations.tasks import route_conversation_task

    monkeypatch.setattr(route_conversation_task, "apply_async", lambda *a, **k: None)
    support.offline_policy = "requeue"
    support.offline_grace_seconds = 300
    support.save()
    agent = staff("leaving", presence["available"], "support")
    conversation = waiting(support)
    offer_accept(offer_id=route_conversation(conversation_id=conversation.pk).offer.pk, agent=agent)
    agent_presence_set(agent=agent, presence=presence["offline"])
    assert offline_requeue() == 0  # still within the grace period: it stays
    type(agent).objects.filter(pk=agent.pk).update(presence_changed_at=timezone.now() - timedelta(seconds=301))
    assert offline_requeue() == 1
    conversation.refresh_from_db()
    assert conversation.assignee is None and "offline" in conversation.routing_note
    assert Message.objects.filter(conversation=conversation, event_type=EventType.TRANSFERRED,
                                  event_data__reason="agent_offline").exists()


def test_stay_policy_keeps_conversations_with_an_offline_agent(support, presence):
    from conversations.routing.assignment import offline_requeue

    agent = staff("stays", presence["available"], "support")
    conversation = waiting(support)
    offer_accept(offer_id=route_conversation(conversation_id=conversation.pk).offer.pk, agent=agent)
    agent_presence_set(agent=agent, presence=presence["offline"])
    type(agent).objects.filter(pk=agent.pk).update(presence_changed_at=timezone.now() - timedelta(hours=1))
    assert offline_requeue() == 0
    conversation.refresh_from_db()
    assert conversation.assignee == agent


def test_routing_events_leave_after_commit_to_the_agent_and_supervisors(support, presence, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("conversations.events._groups_send",
                        lambda groups, event, **_: sent.extend((group, event) for group in groups))
    agent = staff("evented", presence["available"], "support")
    conversation = waiting()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        offer = route_conversation(conversation_id=conversation.pk).offer
    assert sent == []
    for callback in callbacks:
        callback()
    created = [(group, event) for group, event in sent if event["type"] == "offer.created"]
    assert {group for group, _ in created} == {f"agent.{agent.pk}", "supervisors", f"conversation.{conversation.pk}"}
    assert created[0][1] == {
        "type": "offer.created", "offer": offer.pk, "conversation": conversation.pk, "agent": agent.pk,
        "queue": support.pk, "channel": "sms", "step": "queue", "status": "pending",
        "expires_at": offer.expires_at.isoformat(),
    }
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent=agent)
    types = {event["type"] for _, event in sent}
    assert {"conversation.assigned", "offer.accepted"} <= types
    with django_capture_on_commit_callbacks(execute=True):
        agent_presence_set(agent=agent, presence=presence["break"])
    presence_events = [(g, e) for g, e in sent if e["type"] == "agent.presence"]
    assert {g for g, _ in presence_events} == {f"agent.{agent.pk}", "supervisors"}
    assert presence_events[0][1]["available"] is False


def test_a_rule_never_sends_a_conversation_to_a_queue_that_does_not_serve_its_channel(support, presence):
    voice_only = Queue.objects.create(name="Phones", slug="phones", channels=["voice"])
    RoutingRule.objects.create(name="everything", order=1, expression="", queue=voice_only)
    conversation = waiting()
    route_conversation(conversation_id=conversation.pk)
    conversation.refresh_from_db()
    assert conversation.queue == support  # the default, since the only rule's queue takes no SMS


def test_route_for_agent_stops_trying_once_the_agent_is_full(support, presence, monkeypatch):
    from conversations.routing import decisions as routing

    agent = staff("small", presence["available"], "support", capacity={"sms": 1})
    for _ in range(5):
        waiting(support)
    calls = []
    original = routing._route  # every decision, the first (found by its own lock statement) included
    monkeypatch.setattr(routing, "_route", lambda **kw: calls.append(kw) or original(**kw))
    assert route_for_agent(agent_id=agent.pk) == 1
    assert len(calls) == 1  # not five full scans for an agent who can take one


def test_a_short_candidate_list_whose_agents_were_taken_asks_the_whole_question_again(support, presence, monkeypatch):
    """route_for_agent asks for one candidate. If that agent has no room by the time the offer is
    written (another router took their last slot), the conversation is not left waiting while
    someone further down the idle order has room: the decision is made again with the whole list."""
    import dataclasses

    from conversations.routing.eligibility import ELIGIBLE_LIMIT
    from conversations.routing.sql import Candidate
    from conversations.routing import decisions as routing

    taken = staff("taken", presence["available"], "support", capacity={"sms": 1},
                  last_assigned_at=timezone.now() - timedelta(hours=2))
    free = staff("free", presence["available"], "support", last_assigned_at=timezone.now() - timedelta(hours=1))
    make_conversation(make_customer(), make_inbox("sms"), queue=support, assignee=taken)  # their only slot
    conversation = waiting(support)
    real_lock, real_eligible = routing.waiting_conversation_lock, routing.eligible_agents
    stale = (Candidate(pk=taken.pk, load=0, capacity=1),)  # what a look a moment ago found
    asked = []

    def lock_with_a_stale_short_list(conversation_id, now, **kwargs):
        asked.append(kwargs.get("limit"))
        conversation, facts = real_lock(conversation_id, now, **kwargs)
        if kwargs.get("limit") == 1:
            facts = dataclasses.replace(facts, candidates=stale, candidates_queue_id=support.pk, locked_candidate=None)
        return conversation, facts

    def eligible_with_a_stale_short_list(**kwargs):  # SQLite asks separately
        return list(stale) if kwargs.get("limit") == 1 else real_eligible(**kwargs)

    monkeypatch.setattr(routing, "waiting_conversation_lock", lock_with_a_stale_short_list)
    monkeypatch.setattr(routing, "eligible_agents", eligible_with_a_stale_short_list)
    decision = route_conversation(conversation_id=conversation.pk, candidate_limit=1)
    assert decision.offer is not None and decision.offer.agent == free
    assert asked == [1, ELIGIBLE_LIMIT]  # the short question, then the whole one
    assert not Offer.objects.filter(agent=taken).exists()


def test_routing_for_a_freed_agent_offers_to_the_longest_idle_agent_with_room_not_blindly_to_them(
        support, presence):
    """A freed agent's routing asks for a single candidate, the one the whole list would put first:
    another agent idle for longer who has room gets the conversation; the freed agent the next."""
    now = timezone.now()
    freed = staff("freed", presence["available"], "support", capacity={"sms": 1}, last_assigned_at=now)
    idle = staff("idle", presence["available"], "support", capacity={"sms": 1},
                 last_assigned_at=now - timedelta(hours=1))
    first, second = waiting(support, age_seconds=20), waiting(support, age_seconds=10)
    assert route_for_agent(agent_id=freed.pk) == 2
    offers = dict(Offer.objects.filter(status="pending").values_list("conversation_id", "agent_id"))
    assert offers == {first.pk: idle.pk, second.pk: freed.pk}
