"""Conversation facts: derived from the timeline by the tick and the rebuild, idempotently."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from contactcenter import tick
from conversations.models import Conversation, Direction
from conversations.routing.assignment import conversation_assign, conversation_resolve, conversation_transfer
from conversations.routing.presence import agent_presence_set
from supervisor.facts.models import AgentPresenceChange, ConversationFact
from supervisor.facts.services import facts_rebuild, facts_refresh_due, queue_sla_seconds

from ..factories import make_customer, make_message
from .conftest import Story, tokyo

pytestmark = pytest.mark.django_db(transaction=False)


def fact(story) -> ConversationFact:
    return ConversationFact.objects.get(conversation=story.conversation)


def test_transfer_credits_first_reply_to_its_sender_and_handling_to_the_last_agent(day_of_scenarios, staff):
    a = fact(day_of_scenarios["A"])
    assert a.entered_queue_at == day_of_scenarios["A"].at(0)
    assert (a.wait_seconds, a.answered_within_sla, a.sla_seconds) == (30, True, 60)
    assert (a.first_response_seconds, a.first_reply_agent_id) == (60, staff["alice"].pk)
    assert a.agent_id == staff["bob"].pk
    assert a.transfers == 1
    assert a.handle_seconds == 570
    assert a.resolved_at == day_of_scenarios["A"].at(600)


def test_abandons_within_and_after_the_short_threshold(day_of_scenarios, settings):
    assert settings.CC_SHORT_ABANDON_SECONDS == 10
    b, c = fact(day_of_scenarios["B"]), fact(day_of_scenarios["C"])
    assert (b.abandoned_at, b.abandoned_short, b.accepted_at) == (day_of_scenarios["B"].at(5), True, None)
    assert (c.abandoned_short, c.answered_within_sla) == (False, False)


def test_reopen_counts_and_adds_the_second_stretch_to_handle_time(day_of_scenarios):
    e = fact(day_of_scenarios["E"])
    assert e.reopened == 1
    assert e.first_resolved_at == day_of_scenarios["E"].at(100)
    assert e.resolved_at == day_of_scenarios["E"].at(1200)
    assert e.handle_seconds == 90 + 200


def test_snooze_ending_is_not_a_reopen(db, queue, staff):
    story = (Story(customer=make_customer(), start=tokyo(2026, 3, 10, 9), queue=queue).customer_says(0)
             .assigned(5, staff["alice"]).event(10, "snoozed", until="x").event(100, "reopened", reason="snooze_ended")
             .resolved(200))
    call_command("rebuild_conversation_facts")
    assert (fact(story).reopened, fact(story).handle_seconds) == (0, 195)


def test_a_conversation_an_agent_opened_is_not_offered(db, queue, staff):
    story = Story(customer=make_customer(), start=tokyo(2026, 3, 10, 9), queue=queue)
    story.event(0, "created", agent=staff["alice"], via="agent").assigned(0, staff["alice"], via="manual")
    story.agent_says(10, staff["alice"]).customer_says(60)
    call_command("rebuild_conversation_facts")
    assert fact(story).entered_queue_at is None
    assert fact(story).first_response_seconds is None  # no agent reply after the customer's first message


def test_rebuild_is_idempotent(day_of_scenarios):
    def rows():
        return list(ConversationFact.objects.order_by("pk").values_list(
            *[f.name for f in ConversationFact._meta.concrete_fields if f.name not in ("conversation", "derived_at")]))

    first = rows()
    call_command("rebuild_conversation_facts")
    call_command("rebuild_conversation_facts")
    assert rows() == first
    assert ConversationFact.objects.count() == 5


def test_tick_derives_new_and_changed_conversations_once(db, queue, staff):
    assert "supervisor.facts_refresh" in tick.registered()
    story = Story(customer=make_customer(), start=timezone.now() - timedelta(minutes=5), queue=queue).customer_says(0)
    assert tick.run_due_jobs()["supervisor.facts_refresh"] == 1
    assert fact(story).accepted_at is None
    assert facts_refresh_due() == 0  # nothing changed: nothing to do

    story.assigned(20, staff["alice"])  # a new timeline entry makes the facts stale
    assert facts_refresh_due() == 1
    assert fact(story).wait_seconds == 20
    assert facts_refresh_due() == 0


def test_the_tick_sweeps_everything_now_and_then(db, queue, staff):
    """What the cheap path (entries after the last id seen) cannot see, the periodic sweep finds: an
    entry whose id is below the mark (its transaction committed late)."""
    from django.core.cache import cache

    from conversations.models import Message
    from supervisor.facts import services

    story = Story(customer=make_customer(), start=timezone.now() - timedelta(minutes=5), queue=queue).customer_says(0)
    assert facts_refresh_due() == 1
    story.assigned(20, staff["alice"])
    late = Message.objects.filter(conversation=story.conversation).order_by("-pk").first()
    cache.set(services._WATERMARK_KEY, late.pk)  # as if a higher id had been seen first
    assert facts_refresh_due() == 0  # the cheap path does not see it …
    cache.set(services._SWEPT_AT_KEY, time.time() - services.FULL_SWEEP_SECONDS)
    assert facts_refresh_due() == 1  # … the sweep does
    assert fact(story).wait_seconds == 20


def test_survey_columns_come_from_the_surveys_app(day_of_scenarios):
    """A sent survey and its answer (the surveys app's service) fill the facts; the answer's event on
    the contact's timeline makes its facts stale, so the tick reads the score; deriving again keeps
    it. A survey never sent leaves the columns empty."""
    from surveys.answers import survey_answer
    from surveys.links import new_token
    from surveys.models import SurveyDefinition, SurveyKind, SurveyPolicy, SurveyRequest, SurveyStatus

    SurveyPolicy.objects.create()
    csat = SurveyDefinition.objects.create(name="CSAT", kind=SurveyKind.CSAT, question_en="How was it?")
    nps = SurveyDefinition.objects.create(name="NPS", kind=SurveyKind.NPS, question_en="Recommend us?")
    now = timezone.now()

    def survey(story, definition, status=SurveyStatus.SENT):
        conversation = story.conversation
        sent = status == SurveyStatus.SENT
        return SurveyRequest.objects.create(
            conversation=conversation, customer_id=conversation.customer_id, channel=conversation.channel,
            definition=definition, status=status, due_at=now, token=new_token(),
            sent_at=now if sent else None, sent_channel=conversation.channel if sent else "")

    answered = survey(day_of_scenarios["A"], csat)
    survey(day_of_scenarios["D"], nps)
    survey(day_of_scenarios["E"], csat, status=SurveyStatus.SKIPPED)
    facts_rebuild()  # (the real sending records an event on the timeline: the tick would do it)
    survey_answer(request_id=answered.pk, score=4, via="reply")
    assert facts_refresh_due() >= 1  # the answer's event made A's facts stale
    a, d, e = (fact(day_of_scenarios[key]) for key in "ADE")
    assert (a.survey_sent_at, a.csat_score, a.nps_score, a.ces_score) == (answered.sent_at, 4, None, None)
    assert a.survey_answered_at is not None
    assert (d.survey_sent_at is not None, d.nps_score, d.survey_answered_at) == (True, None, None)
    assert (e.survey_sent_at, e.csat_score) == (None, None)
    day_of_scenarios["A"].agent_says(400, day_of_scenarios["A"].conversation.assignee or None, "one more thing")
    facts_refresh_due()
    assert fact(day_of_scenarios["A"]).csat_score == 4  # deriving again reads it again


def test_facts_from_the_real_services(db, queue, staff, settings):
    """The events the routing services record (not hand-written ones) give the same facts."""
    alice, bob = staff["alice"], staff["bob"]
    conversation = Story(customer=make_customer(), start=timezone.now() - timedelta(seconds=30), queue=queue) \
        .customer_says(0).conversation
    conversation_assign(conversation_id=conversation.pk, agent=alice, by=None, via="offer")
    make_message(Conversation.objects.get(pk=conversation.pk), "hi", direction=Direction.OUTBOUND, author_agent=alice)
    conversation_transfer(conversation_id=conversation.pk, by=alice, note="billing", to_agent=bob)
    conversation_resolve(conversation_id=conversation.pk, by=bob)
    facts_refresh_due()
    row = ConversationFact.objects.get(conversation=conversation)
    assert (row.agent_id, row.first_reply_agent_id, row.transfers) == (bob.pk, alice.pk, 1)
    assert row.wait_seconds is not None and row.wait_seconds >= 30
    assert row.answered_within_sla is True
    assert row.resolved_at is not None and row.handle_seconds is not None


def test_sla_default_without_the_queue_field():
    class OldQueue:
        pass

    assert queue_sla_seconds(OldQueue()) == 60
    assert queue_sla_seconds(None) == 60


def test_presence_changes_are_recorded_from_the_agent_row(db, staff, available_presence):
    from conversations.models import PresenceState

    lunch = PresenceState.objects.create(name="Lunch")
    agent_presence_set(agent=staff["alice"], presence=available_presence)
    agent_presence_set(agent=staff["alice"], presence=lunch)
    changes = list(AgentPresenceChange.objects.filter(agent=staff["alice"]).order_by("changed_at")
                   .values_list("name", "is_available"))
    assert changes[-2:] == [("Available", True), ("Lunch", False)]
    staff["alice"].refresh_from_db()
    staff["alice"].save()  # a save that does not change the presence adds nothing
    assert AgentPresenceChange.objects.filter(agent=staff["alice"]).count() == len(changes)


def test_each_presence_change_says_who_made_it(db, staff, available_presence, queue):
    """The agent themselves, a supervisor on their behalf, the system (an offer nobody answered),
    the admin (a save outside the routing services)."""
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import Agent, Offer, PresenceState
    from conversations.routing.presence import offers_expire

    alice, bob = staff["alice"], staff["bob"]
    lunch = PresenceState.objects.create(name="Lunch")
    agent_presence_set(agent=alice, presence=lunch)  # the agent, at the console
    agent_presence_set(agent=alice, presence=available_presence, reason="supervisor", by=bob)
    conversation = Story(customer=make_customer(), start=timezone.now() - timedelta(minutes=2), queue=queue) \
        .customer_says(0).conversation
    Offer.objects.create(conversation=conversation, agent=alice, queue=queue, channel=conversation.channel,
                         step="queue", expires_at=timezone.now() - timedelta(seconds=1))
    assert offers_expire() == 1  # Alice did not answer: the system puts her away
    admin_at = timezone.now() + timedelta(seconds=1)
    edited = Agent.objects.get(pk=alice.pk)
    edited.presence, edited.presence_changed_at = lunch, admin_at
    edited.save()  # as the admin saves the form
    rows = list(AgentPresenceChange.objects.filter(agent=alice).order_by("changed_at", "id")
                .values_list("name", "source", "reason", "changed_by_id"))[-4:]
    assert rows == [("Lunch", "agent", "agent", alice.pk), ("Available", "supervisor", "supervisor", bob.pk),
                    ("Missed offer", "system", "missed_offer", None), ("Lunch", "admin", "", None)]


def test_a_merge_moves_the_facts_with_the_conversations_and_undo_moves_them_back(day_of_scenarios):
    from profiles.services.merge import customer_merge, customer_merge_undo

    source, target = day_of_scenarios["B"].conversation.customer, day_of_scenarios["C"].conversation.customer
    merge = customer_merge(source=source, target=target)
    assert fact(day_of_scenarios["B"]).customer_id == target.pk
    customer_merge_undo(merge=merge)
    assert fact(day_of_scenarios["B"]).customer_id == source.pk
