"""The reports: each metric on scenarios with known answers, drill-downs, time zone boundaries,
charts, CSV, access and a fixed number of queries."""

import csv
import io
from datetime import date, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.models import Channel, PresenceState
from supervisor.facts.models import AgentPresenceChange
from supervisor.facts.services import facts_rebuild
from supervisor.reports import selectors
from supervisor.reports.filters import ReportFilters

from ..factories import PASSWORD, make_customer
from .conftest import Story, tokyo

pytestmark = pytest.mark.django_db

# Session, user, their agent (time zone), their groups; the three filter lists; the day-and-hour grid
# (totals, days, hours, distribution), the handle-time p90, FCR; the queue-and-channel grid; by agent;
# first response by sender; agent status (agents, changes, handling).
REPORT_PAGE_QUERIES = 16

MARCH_10 = ReportFilters(start=date(2026, 3, 10), end=date(2026, 3, 10))


def test_summary_figures_of_the_day(day_of_scenarios):
    summary = selectors.report_summary(MARCH_10)
    assert (summary["offered"], summary["handled"], summary["abandoned"], summary["short_abandoned"]) == (5, 3, 1, 1)
    # Service level: A (30 s) and E (10 s) within 60 s; D (120 s) and C (abandoned at 40 s) are
    # not; B is a short abandon, out of the base: 2 ÷ (5 − 1).
    assert (summary["within_sla"], summary["sl_base"], summary["service_level"]) == (2, 4, 0.5)
    assert summary["asa"] == pytest.approx((30 + 120 + 10) / 3)
    assert summary["frt"] == pytest.approx((60 + 130 + 20) / 3)
    assert summary["handle"] == pytest.approx((570 + 180 + 290) / 3)
    assert summary["handle_p90"] == 570
    assert (summary["transfers_total"], summary["transferred"]) == (1, 1)
    assert (summary["reopened_count"], summary["resolved_once"]) == (1, 3)
    assert summary["reopen_rate"] == pytest.approx(1 / 3)
    # FCR (the day is long past the 7 days): A and D came back on no channel; E was reopened.
    assert (summary["fcr_count"], summary["fcr_eligible"], summary["fcr"]) == (2, 3, pytest.approx(2 / 3))


def test_first_response_is_credited_to_who_sent_it(day_of_scenarios, staff):
    by_sender = {row["first_reply_agent__display_name"]: row for row in selectors.first_response_by_agent(MARCH_10)}
    # Alice sent A's first reply (before the transfer to Bob), D's and E's; Bob sent none.
    assert by_sender["Alice"]["responded"] == 3 and "Bob" not in by_sender
    by_handler = {row["name"]: row for row in selectors.report_by(MARCH_10, "agent")}
    assert by_handler["Bob"]["handled"] == 1 and by_handler["Alice"]["handled"] == 2


def test_repeat_contact_on_another_channel_the_next_day_is_not_first_contact_resolution(db, queue, staff):
    customer = make_customer("Repeat")
    first = (Story(customer=customer, start=tokyo(2026, 3, 10, 9), queue=queue, channel=Channel.SMS).customer_says(0)
             .assigned(10, staff["alice"]).agent_says(20, staff["alice"]).resolved(300))
    (Story(customer=customer, start=tokyo(2026, 3, 11, 9), queue=queue, channel=Channel.EMAIL).customer_says(0)
     .assigned(10, staff["bob"]).agent_says(20, staff["bob"]).resolved(300))
    (Story(customer=make_customer("Once"), start=tokyo(2026, 3, 10, 11), queue=queue).customer_says(0)
     .assigned(10, staff["alice"]).resolved(100))
    facts_rebuild()
    both_days = ReportFilters(start=date(2026, 3, 10), end=date(2026, 3, 11))
    summary = selectors.report_summary(both_days)
    # The SMS contact came back by email the next day; the email one and "Once" did not come back.
    assert (summary["fcr_count"], summary["fcr_eligible"]) == (2, 3)
    repeat = [f.conversation_id for f in selectors.drill_down(both_days, "repeat")]
    assert repeat == [first.conversation.pk]


def test_fcr_waits_for_its_window(db, queue, staff):
    (Story(customer=make_customer(), start=timezone.now() - timedelta(days=2), queue=queue).customer_says(0)
     .assigned(10, staff["alice"]).resolved(100))
    facts_rebuild()
    today = timezone.localdate(timezone=MARCH_10.tz)
    summary = selectors.report_summary(ReportFilters(start=today - timedelta(days=3), end=today))
    assert (summary["resolved_once"], summary["fcr_eligible"], summary["fcr"]) == (1, 0, None)


def test_days_are_tokyo_days(db, queue):
    # 23:59:30 on the 1st and 00:00:10 on the 2nd in Tokyo are both the 1st in UTC.
    late = Story(customer=make_customer(), start=tokyo(2026, 3, 1, 23, 59, 30), queue=queue).customer_says(0)
    early = Story(customer=make_customer(), start=tokyo(2026, 3, 2, 0, 0, 10), queue=queue).customer_says(0)
    facts_rebuild()
    assert late.start.astimezone(dt_timezone.utc).date() == early.start.astimezone(dt_timezone.utc).date()
    first = ReportFilters(start=date(2026, 3, 1), end=date(2026, 3, 1))
    assert [f.conversation_id for f in selectors.drill_down(first, "offered")] == [late.conversation.pk]
    by_day = selectors.report_by_day(ReportFilters(start=date(2026, 3, 1), end=date(2026, 3, 2)))
    assert [(row["day"], row["offered"]) for row in by_day] == [(date(2026, 3, 1), 1), (date(2026, 3, 2), 1)]
    hours = {row["hour"]: row["offered"] for row in selectors.report_by_hour(
        ReportFilters(start=date(2026, 3, 1), end=date(2026, 3, 2)))}
    assert (hours[23], hours[0]) == (1, 1)


def test_filters_by_queue_channel_agent_and_inbox(day_of_scenarios, staff):
    from dataclasses import replace

    from conversations.models import Inbox, Queue

    other = Queue.objects.create(name="Other", slug="other")
    assert selectors.report_summary(replace(MARCH_10, queue=other.pk))["offered"] == 0
    assert selectors.report_summary(replace(MARCH_10, channel=Channel.EMAIL))["offered"] == 0
    assert selectors.report_summary(replace(MARCH_10, channel=Channel.SMS))["offered"] == 5
    assert selectors.report_summary(replace(MARCH_10, agent=staff["bob"].pk))["handled"] == 1
    inbox = Inbox.objects.get(kind=Channel.SMS)
    assert selectors.report_summary(replace(MARCH_10, inbox=inbox.pk))["offered"] == 5


def test_occupancy_is_handling_over_available_time(db, queue, staff):
    alice = staff["alice"]
    available = PresenceState.objects.create(name="Available", is_available=True)
    lunch = PresenceState.objects.create(name="Lunch")
    AgentPresenceChange.objects.all().delete()
    for at, presence in [(tokyo(2026, 3, 10, 9), available), (tokyo(2026, 3, 10, 12), lunch),
                         (tokyo(2026, 3, 10, 13), available), (tokyo(2026, 3, 10, 18), lunch)]:
        AgentPresenceChange.objects.create(agent=alice, presence=presence, name=presence.name,
                                           is_available=presence.is_available, changed_at=at)
    (Story(customer=make_customer(), start=tokyo(2026, 3, 10, 10), queue=queue).customer_says(0)
     .assigned(0, alice).resolved(2 * 3600))
    facts_rebuild()
    rows = [row for row in selectors.agent_status(MARCH_10) if row["agent_id"] == alice.pk]
    assert len(rows) == 1
    assert rows[0]["available_seconds"] == 8 * 3600  # 9–12 and 13–18
    assert rows[0]["handling_seconds"] == 2 * 3600
    assert rows[0]["occupancy"] == pytest.approx(0.25)
    assert [change["name"] for change in rows[0]["changes"]] == ["Available", "Lunch", "Available", "Lunch"]


# --- the pages -------------------------------------------------------------------------------------

def _login(client, username):
    assert client.login(username=username, password=PASSWORD)


def test_agents_and_strangers_get_403_and_anonymous_the_login(client, day_of_scenarios, staff, stranger):
    for url in [reverse("supervisor_reports:index"), reverse("supervisor_reports:conversations"),
                reverse("supervisor_reports:export", args=["conversations"])]:
        assert client.get(url).status_code == 302
        _login(client, "alice")
        assert client.get(url).status_code == 403
        _login(client, stranger.username)
        assert client.get(url).status_code == 403
        client.logout()


def test_page_shows_figures_definitions_and_drill_down_links(client, day_of_scenarios, supervisor):
    _login(client, "carol")
    response = client.get(reverse("supervisor_reports:index") + "?start=2026-03-10&end=2026-03-10")
    html = response.content.decode()
    assert response.status_code == 200
    assert "50.0 %" in html and "Answered within the queue" in html  # service level and its definition
    assert "No answers in this range" in html and "No surveys sent in this range" in html
    drill = reverse("supervisor_reports:conversations") + "?start=2026-03-10&amp;end=2026-03-10&amp;metric=short_abandoned"
    assert drill in html
    listing = client.get(reverse("supervisor_reports:conversations"),
                         {"start": "2026-03-10", "end": "2026-03-10", "metric": "short_abandoned"})
    assert listing.context["page"].paginator.count == 1
    assert listing.context["rows"][0]["fact"].conversation_id == day_of_scenarios["B"].conversation.pk
    assert client.get(reverse("supervisor_reports:conversations"), {"metric": "nonsense"}).status_code == 404


def _surveyed(day_of_scenarios):
    """A: CSAT 5, B: CSAT 3, C: NPS 10, D: CES 6, E: sent and not answered (as the facts keep them)."""
    from supervisor.facts.models import ConversationFact

    sent = tokyo(2026, 3, 11, 9)
    for key, fields in (("A", {"csat_score": 5}), ("B", {"csat_score": 3}), ("C", {"nps_score": 10}),
                        ("D", {"ces_score": 6}), ("E", {})):
        answered = {"survey_answered_at": sent + timedelta(minutes=5)} if fields else {}
        ConversationFact.objects.filter(conversation=day_of_scenarios[key].conversation).update(
            survey_sent_at=sent, **fields, **answered)


def test_survey_figures_with_their_definitions_and_drill_downs(client, day_of_scenarios, supervisor):
    _surveyed(day_of_scenarios)
    summary = selectors.report_summary(MARCH_10)
    assert (summary["csat_count"], summary["csat_satisfied"], summary["csat"]) == (2, 1, 0.5)
    assert summary["csat_mean"] == 4.0
    assert (summary["nps_count"], summary["nps_promoters"], summary["nps_detractors"], summary["nps"]) == (1, 1, 0, 100)
    assert (summary["ces_count"], summary["ces"], summary["ces_easy_share"]) == (1, 6.0, 1.0)
    assert (summary["surveys_answered"], summary["surveys_sent"], summary["response_rate"]) == (4, 5, 0.8)

    _login(client, "carol")
    html = client.get(reverse("supervisor_reports:index") + "?start=2026-03-10&end=2026-03-10").content.decode()
    assert "promoters (9–10) minus" in html and "scoring 4 or 5" in html  # definitions beside the figures
    assert "+100" in html and "80.0 %" in html
    assert 'id="chart-csat-day"' in html  # charted by day too
    for metric, expected in (("csat_satisfied", ["A"]), ("csat_answered", ["A", "B"]), ("nps_promoters", ["C"]),
                             ("ces_answered", ["D"]), ("surveys_sent", ["A", "B", "C", "D", "E"]),
                             ("surveys_answered", ["A", "B", "C", "D"])):
        assert f"metric={metric}" in html
        listing = client.get(reverse("supervisor_reports:conversations"),
                             {"start": "2026-03-10", "end": "2026-03-10", "metric": metric})
        assert sorted(row["fact"].conversation_id for row in listing.context["rows"]) == sorted(
            day_of_scenarios[key].conversation.pk for key in expected), metric
    export = _csv(client.get(reverse("supervisor_reports:export", args=["summary"]),
                             {"start": "2026-03-10", "end": "2026-03-10"}))
    assert export[1][export[0].index("response_rate")] == "0.8000"


def test_nps_counts_detractors_against_promoters():
    from supervisor.reports.metrics import figures_complete
    from supervisor.reports.presenting import nps_text

    row = figures_complete({**dict.fromkeys(["offered", "handled", "short_abandoned", "within_sla", "responded",
                                             "handle_count", "reopened_count", "resolved_once", "surveys_sent",
                                             "surveys_answered", "csat_count", "csat_satisfied", "ces_count",
                                             "ces_easy"], 0),
                            "nps_count": 5, "nps_promoters": 1, "nps_detractors": 3})
    assert row["nps"] == -40 and nps_text(row["nps"]) == "−40"


def test_charts_are_accessible_svg_with_table_fallback(client, day_of_scenarios, supervisor):
    _login(client, "carol")
    html = client.get(reverse("supervisor_reports:index") + "?start=2026-03-10&end=2026-03-10").content.decode()
    for chart_id in ["chart-volume-hour", "chart-volume-day", "chart-sl-day", "chart-asa-day", "chart-csat-day",
                     "chart-frt-distribution"]:
        assert f'<svg class="chart" id="{chart_id}" role="group" aria-labelledby="{chart_id}-title {chart_id}-desc"' in html
        assert f'<title id="{chart_id}-title">' in html and f'<desc id="{chart_id}-desc">' in html
    assert html.count("<summary>As a table</summary>") == 6
    # The "1–5 min" bar of the first-response distribution links to A (60 s) and D (130 s), not E (20 s).
    listing = client.get(reverse("supervisor_reports:conversations"), {
        "start": "2026-03-10", "end": "2026-03-10", "metric": "responded", "frt_from": "60", "frt_to": "300"})
    assert {row["fact"].first_response_seconds for row in listing.context["rows"]} == {60, 130}
    assert "frt_from=60&amp;frt_to=300&amp;metric=responded" in html or "metric=responded&amp;frt_from=60&amp;frt_to=300" in html


def test_page_in_japanese(client, day_of_scenarios, supervisor):
    _login(client, "carol")
    client.post(reverse("set_language"), {"language": "ja", "next": "/"})
    html = client.get(reverse("supervisor_reports:index") + "?start=2026-03-10&end=2026-03-10").content.decode()
    assert "サービスレベル" in html and "初回応答時間" in html and "1〜5分" in html
    assert "アンケート回答率" in html and "推奨者（9〜10）" in html and "この期間の回答はありません" in html


def test_hostile_names_are_escaped(client, db, queue, staff, supervisor):
    from conversations.models import Queue

    Queue.objects.filter(pk=queue.pk).update(name='<script>alert(1)</script>')
    Story(customer=make_customer("<img src=x onerror=alert(1)>"), start=tokyo(2026, 3, 10, 9), queue=queue).customer_says(0)
    facts_rebuild()
    _login(client, "carol")
    html = client.get(reverse("supervisor_reports:index") + "?start=2026-03-10&end=2026-03-10").content.decode()
    assert "<script>alert(1)</script>" not in html
    listing = client.get(reverse("supervisor_reports:conversations"), {"start": "2026-03-10", "end": "2026-03-10"})
    assert "<img src=x" not in listing.content.decode()


def _csv(response) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def test_csv_exports_every_table(client, day_of_scenarios, supervisor):
    from supervisor.reports.csv_export import TABLES

    _login(client, "carol")
    for table in TABLES:
        response = client.get(reverse("supervisor_reports:export", args=[table]), {"start": "2026-03-10", "end": "2026-03-10"})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), table
        assert len(_csv(response)) >= 2, table
    summary = _csv(client.get(reverse("supervisor_reports:export", args=["summary"]), {"start": "2026-03-10", "end": "2026-03-10"}))
    row = dict(zip(summary[0], summary[1]))
    assert (row["offered"], row["handled"], row["service_level"], row["handle_p90"]) == ("5", "3", "0.5000", "570")
    assert client.get(reverse("supervisor_reports:export", args=["nope"])).status_code == 404


def test_csv_one_row_per_conversation_with_its_facts_and_no_formulas(client, db, queue, staff, supervisor):
    Story(customer=make_customer("=HYPERLINK(\"http://evil\")"), start=tokyo(2026, 3, 10, 9), queue=queue) \
        .customer_says(0).assigned(30, staff["alice"]).resolved(90)
    facts_rebuild()
    _login(client, "carol")
    rows = _csv(client.get(reverse("supervisor_reports:export", args=["conversations"]),
                           {"start": "2026-03-10", "end": "2026-03-10"}))
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1]))
    assert row["customer"].startswith("'=")
    assert (row["wait_seconds"], row["handle_seconds"], row["agent"]) == ("30", "60", "Alice")
    assert row["started_at"] == "2026-03-10T09:00:00+09:00"


def test_report_page_query_count_does_not_grow_with_the_data(client, db, queue, staff, supervisor):
    _login(client, "carol")
    url = reverse("supervisor_reports:index") + "?start=2026-03-01&end=2026-03-31"

    def queries() -> int:
        facts_rebuild()
        with CaptureQueriesContext(connection) as context:
            assert client.get(url).status_code == 200
        return len(context.captured_queries)

    def add(count: int, day: int):
        for n in range(count):
            (Story(customer=make_customer(), start=tokyo(2026, 3, day, 9 + n % 8), queue=queue).customer_says(0)
             .assigned(20, staff["alice" if n % 2 else "bob"]).agent_says(40, staff["alice"]).resolved(400))

    add(2, 3)
    few = queries()
    add(10, 5)
    add(10, 20)
    assert queries() == few
    assert few == REPORT_PAGE_QUERIES, few


HOSTILE = ["", "0", "-1", "9999-12-31", "0001-01-01", "2026-02-30", "99999999999999999999", "1e400", "\x00",
           "' OR 1=1 --", "<script>", "日本語" * 100, "24", "25", "NaN"]


def test_hostile_query_strings_never_500(client, day_of_scenarios, supervisor):
    _login(client, "carol")
    client.raise_request_exception = False
    urls = [reverse("supervisor_reports:index"), reverse("supervisor_reports:conversations"),
            reverse("supervisor_reports:export", args=["by_day"])]
    failures = []
    for url in urls:
        for value in HOSTILE:
            for param in ("start", "end", "queue", "channel", "agent", "inbox", "day", "hour", "page", "metric",
                          "reply_agent"):
                response = client.get(url, {param: value})
                if response.status_code >= 500:
                    failures.append((url, param, value[:20], response.status_code))
    assert failures == []


def test_agent_status_on_the_page_adds_up_per_agent_and_shows_one_agents_days(client, db, queue, staff, supervisor):
    alice = staff["alice"]
    available = PresenceState.objects.create(name="Available", is_available=True)
    lunch = PresenceState.objects.create(name="Lunch")
    for day in (10, 11):
        for hour, presence in ((9, available), (13, lunch)):
            AgentPresenceChange.objects.create(agent=alice, presence=presence, name=presence.name,
                                               is_available=presence.is_available, changed_at=tokyo(2026, 3, day, hour),
                                               source="agent", reason="agent", changed_by=alice)
    AgentPresenceChange.objects.create(agent=alice, presence=lunch, name="Lunch", changed_at=tokyo(2026, 3, 11, 17),
                                       source="supervisor", reason="supervisor", changed_by=staff["bob"])
    AgentPresenceChange.objects.create(agent=alice, presence=lunch, name="Missed offer",
                                       changed_at=tokyo(2026, 3, 11, 18), source="system", reason="missed_offer")
    _login(client, "carol")
    url = reverse("supervisor_reports:index")
    page = client.get(url, {"start": "2026-03-10", "end": "2026-03-11"})
    (row,) = [row for row in page.context["agent_status"] if row["agent_id"] == alice.pk]
    assert (row["days"], row["change_count"], row["available_seconds"]) == (2, 6, 8 * 3600)
    assert f"agent={alice.pk}" in row["link"]
    one = client.get(url, {"start": "2026-03-10", "end": "2026-03-11", "agent": alice.pk})
    assert [r["day"] for r in one.context["agent_status"]] == [date(2026, 3, 10), date(2026, 3, 11)]
    html = one.content.decode()
    assert "13:00" in html
    # Who made each change: the agent, a supervisor (named), the system (and why).
    assert "by the agent" in html and f"by supervisor {staff['bob'].display_name}" in html
    assert "by the system (an offer went unanswered)" in html
    export = b"".join(client.get(reverse("supervisor_reports:export", args=["agent_status"]), {
        "start": "2026-03-11", "end": "2026-03-11", "agent": alice.pk}).streaming_content).decode()
    assert f"17:00 Lunch (supervisor: {staff['bob'].display_name})" in export
    assert "18:00 Missed offer (system: missed_offer)" in export
