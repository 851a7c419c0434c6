"""Routing across a conversation's life (issue 4): a customer coming back, the queue's priority,
the known agent who could never take it, rules on the clock, an agent who misses an offer with
others pending, the customer leaving, transfers, and every way capacity frees routing at once."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from conversations.models import Conversation, ConversationStatus, EventType, Message, Offer, Queue, RoutingRule, Skill
from conversations.services import InboundMessage, message_receive
from conversations.routing.offers import RoutingError, offer_reject
from conversations.routing.assignment import conversation_abandon, conversation_assign, conversation_resolve, conversation_transfer
from conversations.routing.presence import offers_expire
from conversations.routing.decisions import route_conversation, route_for_agent

from ..factories import make_conversation, make_customer, make_inbox
from .routing_helpers import staff, waiting

pytestmark = pytest.mark.django_db


def _sms(inbox, sid, sender="090-1234-5678", **extra):
    return InboundMessage(inbox=inbox, sender_kind="phone", sender_address=sender, text="hello", provider_id=sid,
                          **extra)


class _Enqueued(list):
    """The routing tasks queued, as (task name, id); nothing runs them. ``with enqueued.after():``
    runs what a block registers for after commit (a test's transaction never commits)."""

    def __init__(self, capture):
        super().__init__()
        self.after = lambda: capture(execute=True)


@pytest.fixture
def enqueued(monkeypatch, django_capture_on_commit_callbacks):
    from conversations.tasks import route_conversation_task, route_for_agent_task

    calls = _Enqueued(django_capture_on_commit_callbacks)
    for task in (route_conversation_task, route_for_agent_task):
        monkeypatch.setattr(task, "apply_async", lambda args=(), kwargs=None, task=task, **_: calls.append(
            (task.name.rsplit(".", 1)[-1], args[0])))
    return calls


# --- a customer coming back --------------------------------------------------------------------------

def test_a_customer_writing_again_to_a_conversation_nobody_has_is_placed_and_queued_anew(support, presence):
    """Resolved without an agent (the customer's question answered by a bot, say), then the
    customer writes again within the reopen window: the rules place it again (they are a VIP now)
    and it waits from now: no instant overflow on a days-old queued_at, no jump to the head of
    the queue, and its first decision tells them their position again."""
    from profiles.models import Tag

    vip_queue = Queue.objects.create(name="VIP", slug="vip", overflow_after_seconds=60)
    vip_queue.overflow_queue = Queue.objects.create(name="Overflow", slug="overflow")
    vip_queue.save()
    RoutingRule.objects.create(name="VIP", order=1, expression='"VIP" in tags', queue=vip_queue)
    inbox = make_inbox("sms", default_queue=support)
    first = message_receive(_sms(inbox, "SM1")).conversation
    days_ago = timezone.now() - timedelta(days=3)
    Conversation.objects.filter(pk=first.pk).update(queued_at=days_ago, routing_note="waiting: no eligible agent")
    conversation_resolve(conversation_id=first.pk, by=None)
    first.customer.tags.add(Tag.objects.create(name="VIP"))
    agent = staff("vip-desk", presence["available"])

    again = message_receive(_sms(inbox, "SM2"))
    assert again.conversation_reopened and again.conversation.pk == first.pk
    conversation = Conversation.objects.get(pk=first.pk)
    assert conversation.queue == vip_queue and conversation.queue_reason == "VIP"
    assert conversation.queued_at == again.message.created_at and conversation.routing_note == ""
    decision = route_conversation(conversation_id=first.pk)
    assert decision.offer.agent == agent and decision.offer.queue == vip_queue  # not overflowed
    assert "overflow_from" not in decision.explanation


def test_a_reopened_conversation_stays_with_its_agent_while_they_are_available(support, presence):
    inbox = make_inbox("sms", default_queue=support)
    alice = staff("alice", presence["available"], "support")
    first = message_receive(_sms(inbox, "SM1")).conversation
    conversation_assign(conversation_id=first.pk, agent=alice, by=None)
    conversation_resolve(conversation_id=first.pk, by=alice)
    message_receive(_sms(inbox, "SM2"))
    assert Conversation.objects.get(pk=first.pk).assignee == alice  # she knows the customer


def test_a_reopened_conversation_whose_agent_is_away_goes_back_to_routing(support, presence, enqueued):
    inbox = make_inbox("sms", default_queue=support)
    alice = staff("alice", presence["available"], "support")
    first = message_receive(_sms(inbox, "SM1")).conversation
    conversation_assign(conversation_id=first.pk, agent=alice, by=None)
    conversation_resolve(conversation_id=first.pk, by=alice)
    alice.presence = presence["offline"]
    alice.save()
    enqueued.clear()
    with enqueued.after():
        again = message_receive(_sms(inbox, "SM2"))
    conversation = Conversation.objects.get(pk=first.pk)
    assert conversation.assignee is None and conversation.queue == support
    assert conversation.queued_at == again.message.created_at
    assert ("route_conversation", first.pk) in enqueued


def test_a_contact_whose_first_mail_was_automated_meets_the_rules_when_the_customer_writes(support, presence):
    """An auto-reply opened the conversation (resolved at once, never routed, in the inbox's queue);
    the customer's own message reopens it and the rules place it."""
    billing = Queue.objects.create(name="Billing", slug="billing")
    RoutingRule.objects.create(name="Invoices", order=1, expression='"invoice" in subject', queue=billing)
    inbox = make_inbox("email", default_queue=support)
    auto = message_receive(InboundMessage(inbox=inbox, sender_kind="email", sender_address="a@example.jp",
                                          subject="Re: your invoice", text="Out of office", provider_id="<a1@x>",
                                          automated=True)).conversation
    assert auto.status == ConversationStatus.RESOLVED
    again = message_receive(InboundMessage(inbox=inbox, sender_kind="email", sender_address="a@example.jp",
                                           subject="Re: your invoice", text="Wrong amount", provider_id="<a2@x>"))
    assert again.conversation.pk == auto.pk
    assert Conversation.objects.get(pk=auto.pk).queue == billing


# --- the queue's priority ----------------------------------------------------------------------------

def test_an_agent_serving_two_queues_gets_the_higher_priority_queues_conversation_first(presence):
    """A queue's priority is the least priority of what enters it (a TaskRouter target's priority):
    an older conversation of a low-priority queue waits behind a newer one of a high-priority queue."""
    sales = Queue.objects.create(name="Sales", slug="sales", priority=10)
    billing = Queue.objects.create(name="Billing", slug="billing", priority=0)
    agent = staff("both", presence["break"], capacity={"sms": 1})
    old_billing = message_receive(_sms(make_inbox("sms", "+815000000001", default_queue=billing), "SM1",
                                       sender="090-1111-1111")).conversation
    new_sales = message_receive(_sms(make_inbox("sms", "+815000000002", default_queue=sales), "SM2",
                                     sender="090-2222-2222")).conversation
    assert Conversation.objects.get(pk=new_sales.pk).priority == 10
    agent.presence = presence["available"]
    agent.save()
    assert route_for_agent(agent_id=agent.pk) == 1
    assert Offer.objects.get(agent=agent).conversation_id == new_sales.pk
    assert not Offer.objects.filter(conversation=old_billing).exists()


# --- the known agent ---------------------------------------------------------------------------------

def test_a_known_agent_who_could_never_take_it_from_this_queue_is_not_waited_for(support, presence):
    """The customer's last agent is available, but from another team (no skill for this queue):
    the conversation goes to the queue's agents at once instead of "waiting for known agent"."""
    from conversations.models import Skill

    Skill.objects.create(name="Billing", slug="billing")
    support.known_agent_window_days = 30
    support.known_agent_timeout_seconds = 60
    support.save()
    customer = make_customer()
    bob = staff("bob", presence["available"], "billing")
    make_conversation(customer, make_inbox("sms"), status="resolved", assignee=bob,
                      assigned_at=timezone.now() - timedelta(days=1))
    alice = staff("alice", presence["available"], "support")
    decision = route_conversation(conversation_id=waiting(support, customer=customer).pk)
    assert decision.offer is not None and decision.offer.agent == alice


def test_waiting_for_a_full_known_agent_tells_an_sms_customer_their_position(support, presence):
    from conversations.models import Direction

    support.known_agent_window_days = 30
    support.known_agent_timeout_seconds = 60
    support.save()
    inbox = make_inbox("sms", default_queue=support, settings={"queue_auto_reply": "You are number {position}."})
    known = staff("known", presence["available"], "support", capacity={"sms": 1})
    staff("other", presence["available"], "support")
    first = message_receive(_sms(inbox, "SM1")).conversation
    conversation_assign(conversation_id=first.pk, agent=known, by=None)
    conversation_resolve(conversation_id=first.pk, by=known)
    make_conversation(make_customer(), inbox, queue=support, assignee=known, assigned_at=timezone.now())  # full
    inbox.reopen_window_days = 0
    inbox.save()
    later = message_receive(_sms(inbox, "SM2", sender="090-1234-5678"))
    assert later.conversation_opened
    decision = route_conversation(conversation_id=later.conversation.pk)
    assert decision.reason == f"waiting for known agent #{known.pk}"
    told = Message.objects.filter(conversation=later.conversation, direction=Direction.OUTBOUND)
    assert [m.text for m in told] == ["You are number 1."]


# --- rules on the clock --------------------------------------------------------------------------------

def test_time_of_day_rules_read_the_contact_centers_clock_whatever_zone_the_process_has(
        support, presence, settings, monkeypatch):
    settings.CC_DEFAULT_TIME_ZONE = "Asia/Tokyo"
    night = Queue.objects.create(name="Night", slug="night")
    RoutingRule.objects.create(name="Evenings in Tokyo", order=1, expression="hour >= 18", queue=night)
    at_19_tokyo = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)  # 10:00 UTC is 19:00 in Tokyo
    monkeypatch.setattr(timezone, "now", lambda: at_19_tokyo)
    with timezone.override("UTC"):  # a worker's zone
        conversation = waiting()
        route_conversation(conversation_id=conversation.pk)
    assert Conversation.objects.get(pk=conversation.pk).queue == night


def test_rules_on_the_clock_meet_the_moment_asked_about_not_the_moment_they_run(support, presence, settings):
    """A message stored at 19:00 Tokyo meets "hour >= 18" however late its routing runs, and the
    widget asked about a moment answers for that moment (it used to read the clock itself)."""
    from conversations.channels.webchat.status import widget_status

    settings.CC_DEFAULT_TIME_ZONE = "Asia/Tokyo"
    night = Queue.objects.create(name="Night", slug="night", channels=["sms", "webchat"])
    RoutingRule.objects.create(name="Evenings in Tokyo", order=1, expression="hour >= 18", queue=night)
    staff("day-agent", presence["available"], "support")  # serves Support, not Night (no skills asked: everyone)
    night.required_skills.add(Skill.objects.create(name="Nights", slug="nights"))
    at_19_tokyo = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    at_10_tokyo = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)

    result = message_receive(_sms(make_inbox("sms"), "SM-evening", received_at=at_19_tokyo))
    assert result.conversation.queue == night  # routed now (whatever hour it is here), placed for 19:00

    widget = make_inbox("webchat", address="widget-clock")
    assert widget_status(widget, now=at_19_tokyo) == {"type": "status", "online": False, "reason": "no_agent"}
    assert widget_status(widget, now=at_10_tokyo) == {"type": "status", "online": True, "reason": "available"}


# --- a missed offer --------------------------------------------------------------------------------------

def test_an_agent_who_misses_an_offer_loses_their_other_pending_offers_too(support, presence, enqueued):
    """Not at their desk: every customer offered to them would wait out their own timeout for
    nobody. Their other pending offers are rescinded and routed on at once."""
    away = staff("away", presence["available"], "support")
    first, second = waiting(support), waiting(support)
    offer_one = route_conversation(conversation_id=first.pk).offer
    offer_two = route_conversation(conversation_id=second.pk).offer
    assert offer_one.agent == offer_two.agent == away
    Offer.objects.filter(pk=offer_one.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    enqueued.clear()
    with enqueued.after():
        assert offers_expire() == 1
    statuses = dict(Offer.objects.values_list("pk", "status"))
    assert statuses == {offer_one.pk: "timeout", offer_two.pk: "rescinded"}
    away.refresh_from_db()
    assert not away.presence.is_available
    assert {("route_conversation", first.pk), ("route_conversation", second.pk)} <= set(enqueued)


# --- the customer leaving ----------------------------------------------------------------------------------

def test_a_customer_leaving_is_on_the_timeline_and_live_for_supervisors(support, presence, enqueued, monkeypatch):
    from conversations import events
    from conversations.groups import supervisors_group

    sent = []
    monkeypatch.setattr(events, "publish_now", lambda groups, event, **kw: sent.append((groups, event)))
    agent = staff("alice", presence["available"], "support")
    conversation = waiting(support)
    route_conversation(conversation_id=conversation.pk)
    enqueued.clear()
    with enqueued.after():
        assert conversation_abandon(conversation_id=conversation.pk, reason="widget closed")
    event = Message.objects.filter(conversation=conversation, event_type=EventType.ABANDONED).get()
    assert event.event_data == {"reason": "widget closed"}
    abandoned = [groups for groups, e in sent if e["type"] == "conversation.abandoned"]
    assert abandoned and supervisors_group() in abandoned[0]
    assert ("route_for_agent", agent.pk) in enqueued  # the canceled offer's slot


# --- transfers ---------------------------------------------------------------------------------------------

def test_a_transfer_to_a_queue_voids_a_pending_offer_and_wakes_a_snoozed_conversation(support, presence, enqueued):
    other = Queue.objects.create(name="Other", slug="other")
    offered_to = staff("offered", presence["available"], "support")
    by = staff("lead", presence["available"])
    conversation = waiting(support)
    offer = route_conversation(conversation_id=conversation.pk).offer
    enqueued.clear()
    with enqueued.after():
        conversation_transfer(conversation_id=conversation.pk, by=by, to_queue=other, note="billing question",
                              supervisor=True)
    offer.refresh_from_db()
    assert offer.status == "rescinded"
    assert ("route_for_agent", offered_to.pk) in enqueued and ("route_conversation", conversation.pk) in enqueued
    snoozed = waiting(support)
    Conversation.objects.filter(pk=snoozed.pk).update(status="snoozed", snoozed_until=timezone.now() + timedelta(days=1))
    conversation_transfer(conversation_id=snoozed.pk, by=by, to_queue=other, note="", supervisor=True)
    snoozed.refresh_from_db()
    assert snoozed.status == "open" and snoozed.snoozed_until is None and snoozed.queue == other


def test_a_transfer_to_a_queue_refuses_a_resolved_conversation_or_a_queue_not_taking_its_channel(support, presence):
    by = staff("lead", presence["available"])
    email_only = Queue.objects.create(name="Email", slug="email-only", channels=["email"])
    conversation = waiting(support)
    with pytest.raises(RoutingError) as refused:
        conversation_transfer(conversation_id=conversation.pk, by=by, to_queue=email_only, note="", supervisor=True)
    assert refused.value.code == "queue_channel"
    conversation_resolve(conversation_id=conversation.pk, by=by)
    with pytest.raises(RoutingError) as refused:
        conversation_transfer(conversation_id=conversation.pk, by=by, to_queue=support, note="", supervisor=True)
    assert refused.value.code == "resolved"


# --- capacity freed: routing at once, not at the next tick ------------------------------------------------

def test_every_freed_slot_routes_its_agent_at_once(support, presence, enqueued):
    """Rejecting an offer, an offer rescinded by a supervisor's assignment or canceled by a
    resolution, a snooze: each frees a slot, and the agent's waiting work is routed after commit."""
    from conversations.services.agent_actions import conversation_snooze

    staff("alice", presence["available"], "support")
    bob = staff("bob", presence["available"], "support")
    lead = staff("lead", presence["available"])

    rejected = waiting(support)
    offer = route_conversation(conversation_id=rejected.pk).offer
    enqueued.clear()
    with enqueued.after():
        offer_reject(offer_id=offer.pk, agent=offer.agent)
    assert ("route_for_agent", offer.agent_id) in enqueued

    taken_over = waiting(support)
    offer = route_conversation(conversation_id=taken_over.pk).offer
    enqueued.clear()
    with enqueued.after():
        conversation_assign(conversation_id=taken_over.pk, agent=lead, by=lead)
    assert ("route_for_agent", offer.agent_id) in enqueued

    resolved = waiting(support)
    offer = route_conversation(conversation_id=resolved.pk).offer
    enqueued.clear()
    with enqueued.after():
        conversation_resolve(conversation_id=resolved.pk, by=lead)
    assert ("route_for_agent", offer.agent_id) in enqueued

    held = make_conversation(make_customer(), make_inbox("sms"), queue=support, assignee=bob,
                             assigned_at=timezone.now())
    enqueued.clear()
    with enqueued.after():
        conversation_snooze(conversation=held, agent=bob, until=timezone.now() + timedelta(hours=2))
    assert ("route_for_agent", bob.pk) in enqueued


def test_a_conversation_open_again_with_nobody_on_it_is_routed_at_once(support, presence, enqueued):
    from conversations.services.agent_actions import conversation_reopen, snoozed_wake

    by_snooze = waiting(support)
    Conversation.objects.filter(pk=by_snooze.pk).update(status="snoozed",
                                                        snoozed_until=timezone.now() - timedelta(seconds=1))
    with enqueued.after():
        assert snoozed_wake() == 1
    assert ("route_conversation", by_snooze.pk) in enqueued
    by_hand = waiting(support)
    conversation_resolve(conversation_id=by_hand.pk, by=None)
    enqueued.clear()
    with enqueued.after():
        conversation_reopen(conversation=by_hand, agent=None, reason="supervisor")
    assert ("route_conversation", by_hand.pk) in enqueued


# --- the tick: what is due, not everything that waits ------------------------------------------------

def test_the_tick_routes_a_waiting_conversation_again_only_when_something_can_have_changed(
        support, presence, enqueued):
    """Left waiting (nobody free), a conversation is routed again by route_for_agent when capacity
    frees; the tick only retries it when a time-based change is due (here its queue's overflow) or
    after WAITING_RETRY in case a task was lost, not on every tick."""
    from conversations.routing.decisions import WAITING_RETRY, route_waiting

    support.overflow_queue = Queue.objects.create(name="Overflow", slug="overflow")
    support.overflow_after_seconds = 30
    support.save()
    plain_queue = Queue.objects.create(name="Plain", slug="plain")
    patient, plain = waiting(support), waiting(plain_queue)
    for conversation in (patient, plain):
        route_conversation(conversation_id=conversation.pk)
    decided = {c.pk: c for c in Conversation.objects.all()}
    assert decided[patient.pk].route_at == decided[patient.pk].queued_at + timedelta(seconds=30)
    assert decided[plain.pk].route_at > timezone.now() + WAITING_RETRY - timedelta(seconds=5)
    enqueued.clear()
    assert route_waiting() == 0  # nothing due: no decision wasted
    Conversation.objects.filter(pk=patient.pk).update(route_at=timezone.now() - timedelta(seconds=1))
    assert route_waiting() == 1 and enqueued == [("route_conversation", patient.pk)]


def test_a_closed_queue_is_tried_again_when_it_opens(support, presence):
    from conversations.routing.hours import BusinessHours

    support.business_hours = {"time_zone": "Asia/Tokyo", "weekly": {"mon": [["09:00", "18:00"]]}, "holidays": []}
    support.save()
    conversation = waiting(support)
    route_conversation(conversation_id=conversation.pk)
    conversation.refresh_from_db()
    opens = BusinessHours.from_config(support.business_hours).next_open(timezone.now())
    assert "closed" in conversation.routing_note and conversation.route_at == opens


def test_waiting_for_the_known_agent_is_tried_again_when_the_step_ends(support, presence):
    support.known_agent_window_days = 30
    support.known_agent_timeout_seconds = 45
    support.save()
    customer = make_customer()
    known = staff("known", presence["available"], "support", capacity={"sms": 1})
    make_conversation(customer, make_inbox("sms"), status="resolved", assignee=known,
                      assigned_at=timezone.now() - timedelta(days=1))
    make_conversation(make_customer(), make_inbox("sms"), queue=support, assignee=known, assigned_at=timezone.now())
    conversation = waiting(support, customer=customer)
    assert route_conversation(conversation_id=conversation.pk).reason == f"waiting for known agent #{known.pk}"
    conversation.refresh_from_db()
    assert conversation.route_at == conversation.queued_at + timedelta(seconds=45)
