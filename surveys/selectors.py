"""Reads of surveys: the widget's pending cards, the API's answers, and the measures the
supervisor reports show (CSAT % of 4–5, NPS promoters 9–10 minus detractors 0–6, CES average,
response rate), per agent, queue or channel."""

from datetime import datetime, timedelta

from django.db.models import Avg, Count, Q, QuerySet
from django.utils import timezone

from .cards import survey_card
from .models import (
    SurveyKind,
    SurveyPolicy,
    SurveyRequest,
    SurveyResponse,
    SurveyStatus,
)


def pending_widget_cards(*, customer_id: int, now: datetime | None = None) -> list[dict]:
    """Rating cards sent to this customer's widget, unanswered and within the answer window."""
    now = now or timezone.now()
    since = now - timedelta(hours=SurveyPolicy.current().answer_window_hours)
    rows = (SurveyRequest.objects.filter(customer_id=customer_id, status=SurveyStatus.SENT, sent_mode="card",
                                         sent_at__gte=since)
            .select_related("definition", "customer").order_by("-sent_at")[:3])
    return [survey_card(row) for row in rows]


def survey_responses(*, kind: str | None = None, score_min: int | None = None, score_max: int | None = None,
                     queue_id: int | None = None, agent_id: int | None = None, channel: str | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> QuerySet:
    qs = SurveyResponse.objects.select_related("agent", "queue").order_by("-answered_at", "-id")
    filters = {"kind": kind, "score__gte": score_min, "score__lte": score_max, "queue_id": queue_id,
               "agent_id": agent_id, "channel": channel, "answered_at__gte": since, "answered_at__lt": until}
    return qs.filter(**{k: v for k, v in filters.items() if v is not None})


_GROUPS = {"agent": "agent_id", "queue": "queue_id", "channel": "channel"}


def survey_measures(*, by: str, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
    """Per ``by`` ("agent", "queue" or "channel"): surveys sent, answered, the response rate and
    each kind's measure. Two grouped queries, whatever the number of answers."""
    field = _GROUPS[by]
    sent = SurveyRequest.objects.filter(sent_at__isnull=False)
    answers = SurveyResponse.objects.all()
    if since:
        sent, answers = sent.filter(sent_at__gte=since), answers.filter(answered_at__gte=since)
    if until:
        sent, answers = sent.filter(sent_at__lt=until), answers.filter(answered_at__lt=until)
    sent_field = "sent_channel" if by == "channel" else field
    sent_counts = {row[sent_field]: row["n"] for row in sent.values(sent_field).annotate(n=Count("id"))}
    rows = answers.values(field).annotate(
        answered=Count("id"),
        csat_n=Count("id", filter=Q(kind=SurveyKind.CSAT)),
        csat_good=Count("id", filter=Q(kind=SurveyKind.CSAT, score__gte=4)),
        nps_n=Count("id", filter=Q(kind=SurveyKind.NPS)),
        nps_promoters=Count("id", filter=Q(kind=SurveyKind.NPS, score__gte=9)),
        nps_detractors=Count("id", filter=Q(kind=SurveyKind.NPS, score__lte=6)),
        ces_n=Count("id", filter=Q(kind=SurveyKind.CES)),
        ces_avg=Avg("score", filter=Q(kind=SurveyKind.CES)),
    )
    result = []
    for row in rows:
        key = row[field]
        sent_n = sent_counts.get(key, 0)
        result.append({
            by: key, "sent": sent_n, "answered": row["answered"],
            "response_rate": round(100.0 * row["answered"] / sent_n, 1) if sent_n else None,
            "csat_percent": round(100.0 * row["csat_good"] / row["csat_n"], 1) if row["csat_n"] else None,
            "nps": round(100.0 * (row["nps_promoters"] - row["nps_detractors"]) / row["nps_n"], 1)
            if row["nps_n"] else None,
            "ces_average": round(float(row["ces_avg"]), 2) if row["ces_avg"] is not None else None,
            "csat_count": row["csat_n"], "nps_count": row["nps_n"], "ces_count": row["ces_n"],
        })
    return sorted(result, key=lambda r: str(r[by]))
