"""The console home and the read-only customer page: access, escaping, time zones, paging, i18n."""

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import unquote, urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.models import Attachment, DeliveryStatus, Direction, EventType, MessageKind
from profiles.models import (
    Consent,
    CustomerNote,
    IdentityKind,
    IdentitySource,
    JourneyStage,
    MergeSuggestion,
    Tag,
)

from ..factories import (
    make_agent,
    make_conversation,
    make_customer,
    make_identity,
    make_inbox,
    make_message,
    make_touchpoint,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 15, 3, 4, tzinfo=UTC)  # 12:04 in Tokyo, 22:04 the day before in New York
XSS = "<script>alert(1)</script><img src=x onerror=alert(1)>"


def url(customer, **params):
    base = reverse("console:customer", args=[customer.pk])
    if params:
        base += "?" + urlencode(params)
    return base


def html(response) -> str:
    return response.content.decode()


def timeline(body: str) -> str:
    """The centre pane's timeline (the 360 pane quotes first messages too)."""
    match = re.search(r'<ol class="timeline" id="timeline-entries".*?</ol>', body, re.S)
    assert match, "no timeline on the page"
    return match.group(0)


# --- access ------------------------------------------------------------------------------------


def test_customer_list_for_an_agent(client, agent, customer):
    client.force_login(agent.user)
    response = client.get(reverse("console:customers"))
    assert response.status_code == 200
    body = html(response)
    assert "山田 花子" in body
    assert "+819012345678" in body
    assert url(customer) in body


def test_customer_list_search_uses_customer_search(client, agent, customer):
    other = make_customer("Taro Suzuki")
    make_identity(other, IdentityKind.EMAIL, "taro@example.jp")
    client.force_login(agent.user)
    response = client.get(reverse("console:customers"), {"q": "taro@"})
    assert response.request["PATH_INFO"] == "/console/customers/"
    body = html(response)
    assert 'action="/console/customers/" role="search"' in body  # the search form stays on the list
    assert "Taro Suzuki" in body
    assert "山田 花子" not in body
    body = html(client.get(reverse("console:customers"), {"q": "090-1234-5678"}))
    assert "山田 花子" in body
    assert "Taro Suzuki" not in body


@pytest.mark.parametrize("who", ["supervisor", "admin_user"])
def test_supervisors_and_admins_may_use_the_console(client, request, who, customer):
    user = request.getfixturevalue(who)
    client.force_login(getattr(user, "user", user))
    assert client.get(reverse("console:home")).status_code == 200
    assert client.get(reverse("console:customers")).status_code == 200
    assert client.get(url(customer)).status_code == 200


def test_anonymous_is_sent_to_login(client, customer):
    for path in (reverse("console:home"), reverse("console:customers"), url(customer)):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_stranger_gets_403_on_home_and_404_on_a_customer(client, stranger, customer):
    client.force_login(stranger)
    for path in (reverse("console:home"), reverse("console:customers")):
        response = client.get(path, {"q": "山田"})
        assert response.status_code == 403
        assert "山田 花子" not in html(response)
    response = client.get(url(customer))
    assert response.status_code == 404
    assert "山田 花子" not in html(response)


def test_unknown_customer_is_404(client, agent):
    client.force_login(agent.user)
    assert client.get("/console/customers/999999/").status_code == 404


def test_bad_cursor_is_400(client, agent, customer):
    client.force_login(agent.user)
    assert client.get(url(customer, before="not-a-cursor")).status_code == 400


# --- content -----------------------------------------------------------------------------------


def test_profile_shows_everything_we_know(client, agent):
    customer = make_customer("Hanako", language="ja", time_zone="Asia/Tokyo",
                             journey_stage=JourneyStage.AFTER_SALES_SUPPORT,
                             custom_attributes={"plan": "gold", "items": "shadowing dict.items"})
    customer.tags.add(Tag.objects.create(name="vip"))
    make_identity(customer, IdentityKind.PHONE, "+819011112222", verified=True, source=IdentitySource.PROVIDER)
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp", source=IdentitySource.CLAIMED)
    Consent.objects.create(customer=customer, channel="sms", address="+819011112222", status="opted_out",
                           source="STOP keyword")
    CustomerNote.objects.create(customer=customer, author=agent.user, text="Prefers\ncalls after 6pm")
    other = make_customer("Hanako Y.")
    MergeSuggestion.objects.create(customer=customer, candidate=other, reason="same_name_same_domain",
                                   evidence={"domain": "example.jp", "matched_email": "h@example.jp"})
    client.force_login(agent.user)
    body = html(client.get(url(customer)))
    for expected in ("After-sales support", "Asia/Tokyo", "vip", "plan", "gold", "shadowing dict.items",
                     "+819011112222", "hanako@example.jp", "Verified by the provider",
                     "Claimed by the customer (typed, unverified)", "Opted out", "STOP keyword",
                     "Prefers\ncalls after 6pm", "Possible duplicates", "Same name and the same email domain",
                     "matched_email", "h@example.jp", url(other)):
        assert expected in body, expected


def test_merged_customer_links_to_the_target(client, agent):
    target = make_customer("Target Person")
    source = make_customer("Old Record", merged_into=target)
    client.force_login(agent.user)
    body = html(client.get(url(source)))
    assert "merged into" in body
    assert f'href="{url(target)}"' in body


def test_timeline_renders_every_kind_of_entry(client, agent, customer):
    sms = make_conversation(customer, make_inbox("sms"))
    email = make_conversation(customer, make_inbox("email"), subject="Order 123")
    make_message(sms, "hello from sms", created_at=T0)
    reply = make_message(sms, "reply from agent", created_at=T0 + timedelta(minutes=1),
                         direction=Direction.OUTBOUND, author_agent=agent, delivery_status=DeliveryStatus.UNDELIVERED,
                         delivery_error_code="30003")
    make_message(sms, "secret internal remark", created_at=T0 + timedelta(minutes=2), kind=MessageKind.NOTE,
                 direction=Direction.INTERNAL, author_agent=agent)
    make_message(sms, "", created_at=T0 + timedelta(minutes=3), kind=MessageKind.EVENT,
                 direction=Direction.INTERNAL, event_type=EventType.RESOLVED)
    make_message(email, "plain part", html="<p onclick='x()'>HTML PART</p>", created_at=T0 + timedelta(minutes=4))
    make_touchpoint(customer, "Viewed returns policy", url="https://shop.example.jp/returns", device="iPhone",
                    location="Osaka", occurred_at=T0 + timedelta(minutes=5))
    Attachment.objects.create(message=reply, filename="receipt.pdf", size=2048)
    client.force_login(agent.user)
    body = html(client.get(url(customer)))
    assert "channel-sms" in body and ">SMS<" in body
    assert "channel-email" in body and ">Email<" in body
    assert "hello from sms" in body and "reply from agent" in body
    assert "Undelivered" in body and "30003" in body
    assert re.search(r'class="entry entry-message is-note".*?Private note.*?secret internal remark', body, re.S)
    assert re.search(r'class="entry entry-event".*?Resolved', body, re.S)
    assert "Order 123" in body
    assert "plain part" in body and "HTML PART" not in body  # email HTML is never rendered here
    assert "Viewed returns policy" in body and "Osaka" in body and "iPhone" in body
    assert "receipt.pdf" in body
    assert "Alice" in body  # the agent author
    # Oldest first.
    assert body.index("hello from sms") < body.index("reply from agent") < body.index("Viewed returns policy")


def test_customer_text_is_escaped_never_markup(client, agent):
    customer = make_customer(f"Eve {XSS}")
    conv = make_conversation(customer, make_inbox("webchat"), subject=XSS)
    make_message(conv, f"line one\n{XSS}")
    make_touchpoint(customer, XSS, url="javascript:alert(1)", device=XSS)
    customer.custom_attributes = {XSS: XSS}
    customer.save()
    client.force_login(agent.user)
    for path in (url(customer), reverse("console:customers")):
        body = html(client.get(path, {"q": "Eve"} if path == reverse("console:customers") else {}))
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "&lt;img src=x onerror=alert(1)&gt;" in body
        assert "<script>alert" not in body
        assert "<img src=x" not in body
        assert 'href="javascript:' not in body


def test_csp_header_is_strict(client, agent, customer):
    client.force_login(agent.user)
    for path in (reverse("console:home"), reverse("console:customers"), url(customer), "/console/login/"):
        if path == "/console/login/":
            client.logout()
        response = client.get(path)
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp
        body = html(response)
        # Nothing on the page needs 'unsafe-inline': no inline scripts, styles or handlers (JSON
        # data blocks are never executed).
        assert not re.search(r'<script(?![^>]*\b(?:src=|type="application/json"))', body)
        assert "<style" not in body and " style=" not in body
        assert not re.search(r"\son[a-z]+=", body)


@pytest.mark.parametrize(
    ("time_zone", "expected"),
    [("Asia/Tokyo", "2026-01-15 12:04"), ("America/New_York", "2026-01-14 22:04"), ("", "2026-01-15 12:04")],
)
def test_times_are_shown_in_the_agents_time_zone(client, customer, time_zone, expected):
    agent = make_agent("tz-agent", time_zone=time_zone)
    make_message(make_conversation(customer), "what time is it", created_at=T0)
    client.force_login(agent.user)
    body = html(client.get(url(customer)))
    assert expected in body
    assert "2026-01-15 03:04" not in body  # not UTC


def test_older_link_pages_back_without_gaps(client, agent, customer):
    conv = make_conversation(customer)
    for number in range(120):
        make_message(conv, f"msg-{number:03d}", created_at=T0 + timedelta(minutes=number))
    client.force_login(agent.user)
    body = html(client.get(url(customer)))
    seen = re.findall(r"msg-(\d{3})", timeline(body))
    assert seen == [f"{n:03d}" for n in range(70, 120)]
    pages = 1
    while (match := re.search(rf'data-older href="{url(customer)}\?before=([^"]+)"', body)):
        cursor = unquote(unescape(match.group(1)))
        body = html(client.get(url(customer, before=cursor)))
        seen = re.findall(r"msg-(\d{3})", timeline(body)) + seen
        pages += 1
        assert "Jump to latest" in body
    assert pages == 3
    assert seen == [f"{n:03d}" for n in range(120)]


def _history(customer, *, size: int):
    agent = make_agent(f"hist{customer.pk}", display_name="Hist")
    inboxes = [make_inbox(kind) for kind in ("sms", "email", "webchat", "voice", "whatsapp")]
    conversations = [make_conversation(customer, inbox) for inbox in inboxes]
    for number in range(size):
        conv = conversations[number % len(conversations)]
        at = T0 + timedelta(minutes=number)
        if number % 7 == 3:
            make_touchpoint(customer, f"page {number}", occurred_at=at)
        elif number % 5 == 1:
            message = make_message(conv, f"out {number}", created_at=at, direction=Direction.OUTBOUND,
                                   author_agent=agent, delivery_status=DeliveryStatus.DELIVERED)
            Attachment.objects.create(message=message, filename=f"f{number}.png")
        elif number % 5 == 2:
            make_message(conv, f"note {number}", created_at=at, direction=Direction.INTERNAL,
                         kind=MessageKind.NOTE, author_agent=agent)
        elif number % 5 == 3:
            make_message(conv, "", created_at=at, direction=Direction.INTERNAL, kind=MessageKind.EVENT,
                         event_type=EventType.ASSIGNED)
        else:
            make_message(conv, f"in {number}", created_at=at)
    for number in range(size // 10 + 1):
        CustomerNote.objects.create(customer=customer, author=agent.user, text=f"customer note {number}")
        make_identity(customer, IdentityKind.EXTERNAL_ID, f"ext-{customer.pk}-{number}")


def test_query_count_does_not_grow_with_history(client, agent, django_assert_max_num_queries, settings):
    settings.CC_CUSTOMER_ACCESS_LOG_WINDOW_SECONDS = 0  # every view logged (one INSERT): the same on both
    small, big = make_customer("Small"), make_customer("Big")
    _history(small, size=6)
    _history(big, size=300)
    client.force_login(agent.user)
    client.get(url(small))  # warm up (session, content types)
    counts = []
    for customer in (small, big):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url(customer))
        assert response.status_code == 200
        counts.append(len(captured))
    assert counts[0] == counts[1], counts
    with django_assert_max_num_queries(counts[1]):
        response = client.get(url(big))
    body = html(response)
    assert body.count('class="entry ') == 50


# --- i18n --------------------------------------------------------------------------------------


def test_customer_page_in_japanese(client, agent, customer):
    customer.journey_stage = JourneyStage.PURCHASE_DECISION
    customer.save()
    conv = make_conversation(customer, make_inbox("whatsapp"))
    make_message(conv, "こんにちは", created_at=T0)
    make_message(conv, "", created_at=T0 + timedelta(minutes=1), kind=MessageKind.EVENT,
                 direction=Direction.INTERNAL, event_type=EventType.RESOLVED)
    client.force_login(agent.user)
    body = html(client.get(url(customer), HTTP_ACCEPT_LANGUAGE="ja"))
    assert '<html lang="ja">' in body
    for expected in ("タイムライン", "購入の意思決定", "解決", "受信", "識別情報", "ログアウト"):
        assert expected in body, expected
    assert "Timeline" not in body
    # The language cookie set by /i18n/setlang/ wins too.
    client.cookies["django_language"] = "ja"
    assert "タイムライン" in html(client.get(url(customer)))
    client.cookies["django_language"] = "en"
    assert "Timeline" in html(client.get(url(customer), HTTP_ACCEPT_LANGUAGE="ja"))


def test_language_switcher_posts_to_set_language(client, agent, customer):
    client.force_login(agent.user)
    body = html(client.get(url(customer)))
    assert 'action="/i18n/setlang/" method="post"' in body
    assert 'name="csrfmiddlewaretoken"' in body
    response = client.post("/i18n/setlang/", {"language": "ja", "next": url(customer)})
    assert response.status_code == 302
    assert "タイムライン" in html(client.get(url(customer)))
