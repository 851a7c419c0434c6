"""Survey links: signed, bound to one survey by its random token, no login needed.

The URL carries ``signing.dumps`` of the request id and its token: a link cannot be forged or
moved to another survey, and the token (unique, random) is checked against the row. Whether it
still takes an answer (the answer window) is the answer service's decision, not the link's.
"""

import secrets
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "surveys.answer-link"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def link_key(request) -> str:
    return signing.dumps({"r": request.pk, "t": request.token}, salt=SALT, compress=True)


def link_url(request, *, score: int | None = None) -> str:
    base = (settings.CC_PUBLIC_URL or settings.CC_SELF_URL).rstrip("/")
    path = reverse("surveys:answer", kwargs={"key": link_key(request)})
    return base + path + (f"?{urlencode({'score': score})}" if score is not None else "")


def request_from_key(key: str):
    """The survey request a link names, or None for anything forged, altered or unknown."""
    from .models import SurveyRequest

    try:
        data = signing.loads(key, salt=SALT)
        request_id, token = int(data["r"]), str(data["t"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    request = SurveyRequest.objects.select_related("definition", "customer").filter(pk=request_id).first()
    if request is None or not secrets.compare_digest(request.token, token):
        return None
    return request
