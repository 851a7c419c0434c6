"""A contact's survey as its facts keep it, read from the surveys app (which owns requests and
answers; the core knows nothing of either, and the supervisor app reads them here only).

One survey at most per contact (``SurveyRequest.conversation`` is one-to-one): when it was sent,
the score of its kind (CSAT 1–5, NPS 0–10, CES 1–7; the latest when the customer changed it) and
when it was first answered. A contact never surveyed, or whose survey was skipped or canceled
before it went out, has none of them.
"""

from surveys.models import SurveyKind, SurveyRequest

NO_SURVEY = {"survey_sent_at": None, "csat_score": None, "nps_score": None, "ces_score": None,
             "survey_answered_at": None}
_SCORE_FIELD = {SurveyKind.CSAT: "csat_score", SurveyKind.NPS: "nps_score", SurveyKind.CES: "ces_score"}


def survey_facts(conversation_ids: list[int]) -> dict[int, dict]:
    """The survey columns of each of ``conversation_ids`` that had a survey sent (one query)."""
    rows = (SurveyRequest.objects.filter(conversation_id__in=conversation_ids, sent_at__isnull=False).order_by()
            .values_list("conversation_id", "definition__kind", "sent_at", "response__score",
                         "response__answered_at"))
    facts = {}
    for conversation_id, kind, sent_at, score, answered_at in rows:
        fact = {**NO_SURVEY, "survey_sent_at": sent_at}
        field = _SCORE_FIELD.get(kind)
        if field is not None and score is not None:
            fact[field], fact["survey_answered_at"] = score, answered_at
        facts[conversation_id] = fact
    return facts
