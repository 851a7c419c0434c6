"""``make run``: seed_demo, then rebuild_conversation_facts and seed_demo_presence, fill the reports."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from supervisor.facts.models import AgentPresenceChange, ConversationFact
from supervisor.reports import selectors
from supervisor.reports.filters import ReportFilters, report_time_zone

pytestmark = pytest.mark.django_db


def test_demo_fills_weeks_of_facts_and_presence(db):
    call_command("seed_demo", stdout=io.StringIO())
    call_command("rebuild_conversation_facts", stdout=io.StringIO())
    call_command("seed_demo_presence", stdout=io.StringIO())
    added_again = io.StringIO()
    call_command("seed_demo_presence", stdout=added_again)
    assert added_again.getvalue().startswith("0 ")  # idempotent

    today = timezone.localdate(timezone=report_time_zone())
    filters = ReportFilters(start=today - timedelta(days=59), end=today)
    summary = selectors.report_summary(filters)
    # Every demo conversation has its facts; the few we opened ourselves (the surveys' detractor
    # follow-ups) never entered a queue from a customer's message, so they are not "offered".
    assert ConversationFact.objects.count() >= summary["offered"] > 50
    assert summary["handled"] > 50 and summary["service_level"] is not None and summary["frt"] is not None
    assert sum(1 for row in selectors.report_by_day(filters) if row["offered"]) >= 14  # weeks, not a day
    status = selectors.agent_status(filters)
    assert any(row["occupancy"] for row in status)
    assert AgentPresenceChange.objects.exists()
    # The demo's surveys are in the facts, and so in the report's figures.
    assert summary["surveys_sent"] > summary["surveys_answered"] > 0
    assert summary["csat"] is not None and summary["nps"] is not None and summary["ces"] is not None
