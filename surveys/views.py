"""The survey link page: no login, the signed link is the key.

A GET only shows the question with the chosen score preselected, a comment box and a confirm
button: mail security scanners follow every link in a mail, so nothing is recorded until the
customer confirms (POST). A changed answer within the window replaces the first and says so.
"""

from django.http import Http404
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from .answers import AnswerRefused, survey_answer
from .cards import customer_language, survey_card
from .links import request_from_key
from .models import SurveyResponse


def _score(raw, card) -> int | None:
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    return value if card["min"] <= value <= card["max"] else None


@never_cache
@require_http_methods(["GET", "POST"])
def answer_page(request, key: str):
    survey = request_from_key(key)
    if survey is None:
        raise Http404("unknown survey link")
    with translation.override(customer_language(survey.customer)):
        card = survey_card(survey)
        context = {"card": card, "scores": list(range(card["min"], card["max"] + 1)),
                   "language": translation.get_language()}
        if request.method == "POST":
            score = _score(request.POST.get("score"), card)
            comment = request.POST.get("comment", "")[:2000]
            if score is None:
                context.update(error=True, chosen=None, comment=comment)
                return render(request, "surveys/answer.html", context, status=400)
            try:
                response, previous = survey_answer(request_id=survey.pk, score=score, comment=comment, via="link",
                                                   allow_change=True)
            except AnswerRefused as exc:
                context.update(closed=exc.message)
                return render(request, "surveys/answer.html", context, status=409 if exc.code == "closed" else 400)
            context.update(done=True, score=response.score, previous=previous)
            return render(request, "surveys/answer.html", context)
        existing = SurveyResponse.objects.filter(request=survey).first()
        context.update(chosen=_score(request.GET.get("score"), card), existing=existing)
        return render(request, "surveys/answer.html", context)
