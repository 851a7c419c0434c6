"""``/api/v1/survey-responses/`` (supervisors and admins only, with its filters) and the measures
the supervisor reports use: CSAT % of 4–5, NPS promoters minus detractors, CES average, response
rate, per agent, queue and channel."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Channel, Queue
from surveys.models import SurveyDefinition, SurveyKind, SurveyRequest, SurveyResponse, SurveyStatus
from surveys.selectors import survey_measures

from ..factories import make_agent, make_customer, make_inbox, make_conversation

pytestmark = pytest.mark.django_db
URL = "/api/v1/survey-responses/"


@pytest.fixture
def answers(db, agent, other_agent):
    """Answers over two agents, two queues and three channels, plus surveys sent and unanswered."""
    billing = Queue.objects.create(name="Billing", slug="billing")
    sales = Queue.objects.create(name="Sales", slug="sales")
    definitions = {kind: SurveyDefinition.objects.create(name=kind, kind=kind, question_en="?") for kind in SurveyKind}
    now = timezone.now()
    rows = [  # kind, score, agent, queue, channel, answered?
        ("csat", 5, agent, billing, Channel.SMS, True), ("csat", 4, agent, billing, Channel.EMAIL, True),
        ("csat", 2, agent, billing, Channel.SMS, True), ("csat", 1, other_agent, sales, Channel.WEBCHAT, True),
        ("nps", 10, agent, billing, Channel.EMAIL, True), ("nps", 9, other_agent, sales, Channel.SMS, True),
        ("nps", 3, other_agent, sales, Channel.SMS, True), ("nps", 7, agent, billing, Channel.SMS, True),
        ("ces", 6, agent, billing, Channel.WEBCHAT, True), ("ces", 3, agent, billing, Channel.WEBCHAT, True),
        ("csat", 0, agent, billing, Channel.SMS, False), ("csat", 0, other_agent, sales, Channel.SMS, False),
    ]
    made = []
    for n, (kind, score, who, queue, channel, answered) in enumerate(rows):
        conversation = make_conversation(make_customer(), make_inbox(channel), queue=queue, assignee=who)
        request = SurveyRequest.objects.create(
            conversation=conversation, customer=conversation.customer, channel=channel, definition=definitions[kind],
            agent=who, queue=queue, status=SurveyStatus.ANSWERED if answered else SurveyStatus.SENT,
            due_at=now, sent_at=now - timedelta(days=n), sent_channel=channel, token=f"t{n}")
        if answered:
            made.append(SurveyResponse.objects.create(
                request=request, kind=kind, score=score, comment=f"comment {n}", via="reply", channel=channel,
                conversation=conversation, customer=conversation.customer, agent=who, queue=queue,
                answered_at=now - timedelta(days=n)))
    return {"billing": billing, "sales": sales, "responses": made}


def test_agents_and_strangers_may_not_read_survey_answers(client, agent, stranger, answers):
    client.force_login(agent.user)
    assert client.get(URL).status_code == 403
    client.force_login(stranger)
    assert client.get(URL).status_code == 403
    client.logout()
    assert client.get(URL).status_code in (401, 403)


def test_supervisors_read_every_answer_with_its_context(client, supervisor, answers, agent):
    client.force_login(supervisor.user)
    body = client.get(URL).json()
    assert body["count"] == 10
    newest = body["results"][0]
    first = answers["responses"][0]
    assert newest == {
        "id": first.pk, "type": "csat", "score": 5, "comment": "comment 0", "channel": "sms",
        "conversation": first.conversation_id, "customer": first.customer_id, "agent": agent.pk,
        "agent_name": agent.display_name, "queue": answers["billing"].pk, "queue_name": "Billing", "via": "reply",
        "answered_at": newest["answered_at"], "changed_at": None, "previous_score": None,
    }


@pytest.mark.parametrize(("query", "expected"), [
    ("type=nps", 4),
    ("type=csat&score_max=2", 2),
    ("score_min=9", 2),
    ("channel=webchat", 3),
    ("type=ces&channel=webchat", 2),
])
def test_filters(client, admin_user, answers, query, expected):
    client.force_login(admin_user)
    assert client.get(f"{URL}?{query}").json()["count"] == expected


def test_filter_by_queue_agent_and_date(client, supervisor, answers, other_agent):
    client.force_login(supervisor.user)
    assert client.get(f"{URL}?queue={answers['sales'].pk}").json()["count"] == 3
    assert client.get(f"{URL}?agent={other_agent.pk}").json()["count"] == 3
    since = (timezone.now() - timedelta(days=2, hours=12)).isoformat().replace("+00:00", "Z")
    assert client.get(URL, {"since": since}).json()["count"] == 3
    assert client.get(f"{URL}?type=bogus").status_code == 400
    assert client.get(f"{URL}?score_min=x").status_code == 400


def test_measures_per_queue_agent_and_channel(agent, answers):
    by_queue = {row["queue"]: row for row in survey_measures(by="queue")}
    billing = by_queue[answers["billing"].pk]
    # Billing: CSAT 5, 4, 2 → 2 of 3 are 4–5; NPS 10, 7 → 1 promoter, 0 detractors of 2; CES 6, 3.
    assert billing["csat_percent"] == 66.7 and billing["nps"] == 50.0 and billing["ces_average"] == 4.5
    assert billing["sent"] == 8 and billing["answered"] == 7 and billing["response_rate"] == 87.5
    sales = by_queue[answers["sales"].pk]
    # Sales: CSAT 1 → 0 %; NPS 9, 3 → 1 promoter − 1 detractor = 0.
    assert sales["csat_percent"] == 0.0 and sales["nps"] == 0.0 and sales["ces_average"] is None
    assert sales["response_rate"] == 75.0
    by_channel = {row["channel"]: row for row in survey_measures(by="channel")}
    assert by_channel["webchat"]["answered"] == 3 and by_channel["webchat"]["sent"] == 3
    by_agent = {row["agent"]: row for row in survey_measures(by="agent")}
    assert by_agent[agent.pk]["answered"] == 7


def test_measures_api_for_supervisors(client, supervisor, agent, answers):
    client.force_login(agent.user)
    assert client.get("/api/v1/survey-measures/?by=queue").status_code == 403
    client.force_login(supervisor.user)
    rows = client.get("/api/v1/survey-measures/?by=channel").json()
    assert {row["channel"] for row in rows} == {"sms", "email", "webchat"}


def test_the_schema_of_the_survey_views_has_no_warnings():
    from django.urls import include, path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=[path("api/v1/", include("surveys.api_urls"))]).get_schema(public=True)
    assert set(schema["paths"]) == {"/api/v1/survey-responses/", "/api/v1/survey-measures/"}
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._error_cache)
