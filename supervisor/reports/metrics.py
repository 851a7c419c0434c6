"""The metrics: each one's condition on the facts (what its drill-down lists), its aggregate, and
its definition as the page shows it beside the figure (the same words as docs/metrics.md).
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from supervisor.facts.models import ConversationFact

OFFERED = Q(entered_queue_at__isnull=False)
SURVEY_SENT = Q(survey_sent_at__isnull=False)
SURVEY_ANSWERED = SURVEY_SENT & Q(survey_answered_at__isnull=False)


def fcr_days() -> int:
    return settings.CC_FCR_DAYS


def repeat_contact_exists() -> Exists:
    """Another conversation of the same customer whose first message came within the FCR window
    after this one's resolution, on any channel."""
    return Exists(ConversationFact.objects.filter(
        customer_id=OuterRef("customer_id"),
        first_customer_message_at__gt=OuterRef("resolved_at"),
        first_customer_message_at__lte=OuterRef("resolved_at") + timedelta(days=fcr_days()),
    ).exclude(pk=OuterRef("pk")))


def fcr_eligible(now=None) -> Q:
    """Resolved contacts whose window has passed: until then nobody knows whether they come back."""
    now = now or timezone.now()
    return Q(resolved_at__isnull=False, resolved_at__lte=now - timedelta(days=fcr_days()))


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    definition: str


# What each figure on the page means (and the condition its drill-down lists, in ``drill_q``).
DEFINITIONS = [
    Metric("offered", _("Offered"), _("Conversations a customer started that entered a queue (conversations an "
                                        "agent opened are not offered).")),
    Metric("handled", _("Handled"), _("Offered conversations an agent accepted (or was assigned).")),
    Metric("abandoned", _("Abandoned"), _("Offered conversations the customer left before an agent accepted, after "
                                            "the short-abandon threshold.")),
    Metric("short_abandoned", _("Short abandons"), _("Customers who left within the short-abandon threshold "
                                                    "(%(seconds)s s) of entering the queue: reported apart, "
                                                    "and left out of the service level.")),
    Metric("service_level", _("Service level"), _("Answered within the queue's SLA ÷ (offered − short abandons). "
                                                  "Abandons after the threshold count against it, as do "
                                                  "conversations still waiting. SLA: the queue's service-level "
                                                  "threshold (60 s unless set).")),
    Metric("asa", _("Average speed of answer"), _("Mean time from entering the queue to acceptance, over handled "
                                                  "conversations.")),
    Metric("frt", _("First response time"), _("Mean time from the customer's first message to the first agent "
                                              "reply, credited to the agent who sent it (not the last one after a "
                                              "transfer).")),
    Metric("handle", _("Handle time"), _("From acceptance to resolution, wrap-up included (each stretch after a "
                                        "reopen added): mean and 90th percentile (nearest rank).")),
    Metric("transfers", _("Transfers"), _("Moves to another agent or queue recorded on the timeline (by an agent, a "
                                          "supervisor, overflow or an offline requeue), and the conversations "
                                          "transferred at least once.")),
    Metric("reopen_rate", _("Reopen rate"), _("Conversations reopened after a resolution (a customer writing again "
                                              "or an agent reopening; not a snooze ending) ÷ conversations resolved "
                                              "at least once.")),
    Metric("fcr", _("First-contact resolution across channels"),
           _("Resolved conversations after which the same customer did not contact us again, on any channel, "
             "within %(days)s days, and that were not reopened ÷ resolved conversations whose %(days)s days have "
             "passed.")),
    Metric("csat", _("CSAT"), _("Customer satisfaction: the share of CSAT answers scoring 4 or 5 on the 1–5 scale "
                                "(the mean score beside it).")),
    Metric("nps", _("NPS"), _("Net promoter score: the percentage of NPS answers from promoters (9–10) minus the "
                              "percentage from detractors (0–6), on the 0–10 scale; from −100 to +100.")),
    Metric("ces", _("CES"), _("Customer effort score: the mean of the CES answers on the 1–7 scale (7: very easy), "
                              "and the share answering 5–7.")),
    Metric("response_rate", _("Survey response rate"), _("Surveys answered ÷ surveys sent, of the conversations in "
                                                         "the range (a survey skipped or canceled before it went out "
                                                         "is not sent).")),
]


def definitions() -> list[dict]:
    params = {"seconds": settings.CC_SHORT_ABANDON_SECONDS, "days": fcr_days()}
    return [{"key": m.key, "label": m.label, "definition": str(m.definition) % params if "%(" in str(m.definition)
             else m.definition} for m in DEFINITIONS]


def drill_q(metric: str, *, now=None) -> Q | None:
    """The condition a figure's drill-down adds to the filters; None for an unknown name.
    ``fcr`` and ``repeat`` need the ``has_repeat`` annotation (``selectors.drill_down``)."""
    conditions = {
        "all": Q(),
        "offered": OFFERED,
        "handled": OFFERED & Q(accepted_at__isnull=False),
        "abandoned": OFFERED & Q(abandoned_at__isnull=False, abandoned_short=False),
        "short_abandoned": OFFERED & Q(abandoned_short=True),
        "within_sla": OFFERED & Q(answered_within_sla=True),
        "missed_sla": OFFERED & Q(answered_within_sla=False, abandoned_short=False),
        "responded": Q(first_response_seconds__isnull=False),
        "handle": Q(handle_seconds__isnull=False),
        "transferred": Q(transfers__gt=0),
        "reopened": Q(reopened__gt=0),
        "resolved_once": Q(first_resolved_at__isnull=False),
        "fcr_eligible": fcr_eligible(now),
        "fcr": fcr_eligible(now) & Q(reopened=0, has_repeat=False),
        "repeat": fcr_eligible(now) & (Q(reopened__gt=0) | Q(has_repeat=True)),
        "surveys_sent": SURVEY_SENT,
        "surveys_answered": SURVEY_ANSWERED,
        "csat_answered": Q(csat_score__isnull=False),
        "csat_satisfied": Q(csat_score__gte=4),
        "nps_answered": Q(nps_score__isnull=False),
        "nps_promoters": Q(nps_score__gte=9),
        "nps_detractors": Q(nps_score__lte=6),
        "ces_answered": Q(ces_score__isnull=False),
        "ces_easy": Q(ces_score__gte=5),
    }
    return conditions.get(metric)


def figure_aggregates() -> dict:
    """The counts and sums of one row of any table (one aggregate over the facts). Only counts and
    sums: rows of a fine grouping (day and hour) add up to their day, their hour or the total, and
    ``figures_complete`` turns the sums into means."""
    handled = OFFERED & Q(accepted_at__isnull=False)
    return {
        "offered": Count("pk", filter=OFFERED),
        "handled": Count("pk", filter=handled),
        "abandoned": Count("pk", filter=OFFERED & Q(abandoned_at__isnull=False, abandoned_short=False)),
        "short_abandoned": Count("pk", filter=OFFERED & Q(abandoned_short=True)),
        "within_sla": Count("pk", filter=OFFERED & Q(answered_within_sla=True)),
        "wait_sum": Sum("wait_seconds", filter=handled),
        "frt_sum": Sum("first_response_seconds"),
        "responded": Count("first_response_seconds"),
        "handle_sum": Sum("handle_seconds"),
        "handle_count": Count("handle_seconds"),
        "transfers_total": Sum("transfers"),
        "transferred": Count("pk", filter=Q(transfers__gt=0)),
        "reopened_count": Count("pk", filter=Q(reopened__gt=0)),
        "resolved_once": Count("pk", filter=Q(first_resolved_at__isnull=False)),
        "surveys_sent": Count("pk", filter=SURVEY_SENT),
        "surveys_answered": Count("pk", filter=SURVEY_ANSWERED),
        "csat_count": Count("csat_score"),
        "csat_satisfied": Count("pk", filter=Q(csat_score__gte=4)),
        "csat_sum": Sum("csat_score"),
        "nps_count": Count("nps_score"),
        "nps_promoters": Count("pk", filter=Q(nps_score__gte=9)),
        "nps_detractors": Count("pk", filter=Q(nps_score__lte=6)),
        "ces_count": Count("ces_score"),
        "ces_easy": Count("pk", filter=Q(ces_score__gte=5)),
        "ces_sum": Sum("ces_score"),
    }


FIGURE_NAMES = tuple(figure_aggregates())


def ratio(numerator, denominator) -> float | None:
    return numerator / denominator if denominator else None


def figures_add(rows) -> dict:
    """The sum of rows of ``figure_aggregates`` (and of the distribution's ``frt_bucket_*`` counts)."""
    names = set(FIGURE_NAMES)
    total: dict = dict.fromkeys(FIGURE_NAMES, 0)
    for row in rows:
        for name, value in row.items():
            if value and (name in names or name.startswith("frt_bucket_")):
                total[name] = total.get(name, 0) + value
    return total


def figures_complete(row: dict) -> dict:
    """The means and ratios of a row of ``figure_aggregates``."""
    row = dict(row)
    for name in ("transfers_total", "wait_sum", "frt_sum", "handle_sum", "csat_sum", "ces_sum"):
        row[name] = row.get(name) or 0
    row["asa"] = ratio(row["wait_sum"], row["handled"])
    row["frt"] = ratio(row["frt_sum"], row["responded"])
    row["handle"] = ratio(row["handle_sum"], row["handle_count"])
    row["sl_base"] = row["offered"] - row["short_abandoned"]
    row["service_level"] = ratio(row["within_sla"], row["sl_base"])
    row["reopen_rate"] = ratio(row["reopened_count"], row["resolved_once"])
    row["csat"] = ratio(row["csat_satisfied"], row["csat_count"])
    row["csat_mean"] = ratio(row["csat_sum"], row["csat_count"])
    row["nps"] = (None if not row["nps_count"]
                  else 100 * (row["nps_promoters"] - row["nps_detractors"]) / row["nps_count"])
    row["ces"] = ratio(row["ces_sum"], row["ces_count"])
    row["ces_easy_share"] = ratio(row["ces_easy"], row["ces_count"])
    row["response_rate"] = ratio(row["surveys_answered"], row["surveys_sent"])
    return row
