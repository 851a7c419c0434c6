"""Every supervisor page and intervention answers hostile input without a 5xx (ids out of range,
NUL, numbers that do not fit, markup)."""

import pytest
from django.test import Client

from ..factories import make_agent, make_conversation, make_customer, make_inbox

pytestmark = pytest.mark.django_db

HOSTILE = ["9" * 60, str(2**70), "-1", "1e400", "NaN", "\x00", "a\x00b", "<script>x</script>", "日本語" * 300, ""]


def test_interventions_and_pages_never_answer_5xx(desk):
    carol = make_agent("carol", role="supervisor", display_name="Carol", presence=desk.available)
    conversation = make_conversation(make_customer("Hana"), make_inbox(), queue=desk.queue)
    client = Client()
    client.force_login(carol.user)
    client.raise_request_exception = False
    failures = []
    for ident in (str(conversation.pk), "9" * 25):
        for action in ("assign", "transfer", "note"):
            for value in HOSTILE:
                response = client.post(f"/supervisor/conversations/{ident}/{action}/",
                                       {"agent": value, "queue": value, "note": value, "text": value},
                                       HTTP_ACCEPT="application/json")
                if response.status_code >= 500:
                    failures.append((action, ident[:10], value[:10], response.status_code))
    for ident in (str(carol.pk), "9" * 25):
        for value in HOSTILE:
            response = client.post(f"/supervisor/agents/{ident}/presence/", {"presence": value},
                                   HTTP_ACCEPT="application/json")
            if response.status_code >= 500:
                failures.append(("presence", ident[:10], value[:10], response.status_code))
    for value in HOSTILE:
        for url in ("/supervisor/", "/supervisor/me/"):
            response = client.get(url, {"lang": value, "q": value})
            if response.status_code >= 500:
                failures.append(("GET", url, value[:10], response.status_code))
    assert failures == []
