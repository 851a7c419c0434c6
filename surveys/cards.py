"""What a survey asks, in the customer's language (Japanese or English, English the fallback):
the widget's rating card, the link page and the messages are built from this one card."""

from django.utils import translation
from django.utils.translation import gettext as _

from .models import SurveyRequest, scale_of


def customer_language(customer) -> str:
    return "ja" if (customer.language or "").lower().startswith("ja") else "en"


def survey_card(request: SurveyRequest) -> dict:
    """The question and scale, in the customer's language: the widget's card, the link page."""
    language = customer_language(request.customer)
    low, high = scale_of(request.definition.kind)
    with translation.override(language):
        labels = {"csat": (_("Very dissatisfied"), _("Very satisfied")),
                  "nps": (_("Not at all likely"), _("Extremely likely")),
                  "ces": (_("Very difficult"), _("Very easy"))}[request.definition.kind]
        return {"token": request.token, "conversation": request.conversation_id, "kind": request.definition.kind,
                "question": request.definition.question_in(language),
                "follow_up": request.definition.follow_up_in(language),
                "min": low, "max": high, "min_label": str(labels[0]), "max_label": str(labels[1])}
