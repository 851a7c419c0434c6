"""The agent console's pages and fragments: who sees what, escaping, the email frame, query counts,
unread counts, reply options, canned responses and the "what they already told us" card."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.models import (
    Agent,
    AgentSkill,
    Attachment,
    CannedResponse,
    Channel,
    Conversation,
    ConversationRead,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    EventType,
    MessageKind,
    Offer,
    PresenceState,
    Queue,
    Skill,
    WrapUpCode,
)
from conversations.console import selectors
from conversations.channels.email.ingest import email_receive
from conversations.routing.assignment import conversation_resolve, conversation_transfer, offline_requeue
from conversations.routing.decisions import route_conversation
from conversations.services.system_events import system_event_record
from profiles.models import ConsentStatus, IdentityKind
from profiles.services import consent_record

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

XSS = "<script>alert(1)</script><img src=x onerror=alert(1)>"
ESCAPED = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;")
EMAIL_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"


def page(conversation) -> str:
    return reverse("console:conversation", args=[conversation.pk])


def body(response) -> str:
    return response.content.decode()


def assert_escaped(text: str) -> None:
    for escaped in ESCAPED:
        assert escaped in text
    assert "<script>alert" not in text
    assert "<img src=x" not in text


def sidebar_item(html: str, conversation) -> str:
    """The work-list entry of ``conversation`` (empty when it is not listed)."""
    match = re.search(rf'<li class="work-item[^"]*" data-conversation="{conversation.pk}">(.*?)</li>', html, re.S)
    return match.group(0) if match else ""


def timeline(html: str) -> str:
    match = re.search(r'<ol class="timeline" id="timeline-entries".*?</ol>', html, re.S)
    assert match, "no timeline on the page"
    return match.group(0)


@pytest.fixture
def mine(agent, customer):
    """Alice's SMS conversation with Hanako."""
    conversation = make_conversation(customer, make_inbox("sms"), assignee=agent, assigned_at=timezone.now())
    make_message(conversation, "荷物が届きません")
    return conversation


@pytest.fixture
def bobs(other_agent):
    """Bob's conversation: Alice is not offered it and it waits in no queue of hers."""
    someone = make_customer("Someone Else")
    make_identity(someone, IdentityKind.PHONE, "+819099990000")
    conversation = make_conversation(someone, make_inbox("sms"), assignee=other_agent)
    make_message(conversation, "bob's private business")
    return conversation


# --- who sees what ---------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_everywhere(client, mine):
    message = mine.messages.first()
    paths = [
        reverse("console:home"), reverse("console:customers"), reverse("console:sidebar"), page(mine),
        reverse("console:customer", args=[mine.customer_id]), reverse("console:catchup", args=[mine.customer_id]),
        reverse("console:older", args=[mine.customer_id]), reverse("console:message-html", args=[message.pk]),
        reverse("console:canned"),
    ]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/login/?next="), path


def test_user_without_a_role_gets_404_on_object_pages_and_403_on_the_console(client, stranger, mine):
    email = make_conversation(mine.customer, make_inbox("email"))
    html_message = make_message(email, "plain", html="<p>formatted</p>")
    client.force_login(stranger)
    for path in (page(mine), page(mine) + "?fragment=panes", reverse("console:customer", args=[mine.customer_id]),
                 reverse("console:catchup", args=[mine.customer_id]), reverse("console:older", args=[mine.customer_id]),
                 reverse("console:message-html", args=[html_message.pk]),
                 reverse("console:canned") + f"?conversation={mine.pk}", reverse("console:canned")):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "荷物" not in body(response) and "formatted" not in body(response)
    for path in (reverse("console:home"), reverse("console:sidebar"), reverse("console:customers")):
        assert client.get(path).status_code == 403, path


def test_agent_cannot_open_another_agents_conversation_but_may_look_the_customer_up(client, agent, bobs):
    client.force_login(agent.user)
    for path in (page(bobs), page(bobs) + "?fragment=panes", reverse("console:canned") + f"?conversation={bobs.pk}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "private business" not in body(response)
    # Every member of staff may look a customer up (the customer directory), and follow their timeline.
    assert client.get(reverse("console:customer", args=[bobs.customer_id])).status_code == 200
    response = client.get(reverse("console:catchup", args=[bobs.customer_id]), {"seen": "{}"})
    assert response.status_code == 200
    assert [entry["conversation"] for entry in response.json()["entries"]] == [bobs.pk]
    # The sidebar never lists it.
    assert not sidebar_item(body(client.get(reverse("console:sidebar"))), bobs)


def test_unknown_conversation_is_404(client, agent):
    client.force_login(agent.user)
    assert client.get("/console/conversations/999999/").status_code == 404


def test_agent_sees_offered_and_queued_conversations_only_with_the_queues_skills(client, agent):
    skill = Skill.objects.create(name="Billing", slug="billing")
    billing = Queue.objects.create(name="Billing", slug="billing")
    billing.required_skills.add(skill)
    waiting = make_conversation(make_customer("Waiting"), make_inbox("sms"), queue=billing)
    offered = make_conversation(make_customer("Offered"), make_inbox("email"), queue=billing)
    Offer.objects.create(conversation=offered, agent=agent, queue=billing, channel="email", step="queue",
                         expires_at=timezone.now() + timedelta(minutes=2))
    client.force_login(agent.user)
    assert client.get(page(waiting)).status_code == 404  # lacks the queue's skill
    assert client.get(page(offered)).status_code == 200  # offered to her
    AgentSkill.objects.create(agent=agent, skill=skill)
    assert client.get(page(waiting)).status_code == 200
    # Once someone else has it, it is theirs.
    waiting.assignee = make_agent("dave")
    waiting.save()
    assert client.get(page(waiting)).status_code == 404


@pytest.mark.parametrize("who", ["supervisor", "admin_user"])
def test_supervisors_and_admins_see_every_conversation(client, request, who, bobs):
    user = request.getfixturevalue(who)
    client.force_login(getattr(user, "user", user))
    response = client.get(page(bobs))
    assert response.status_code == 200
    assert "bob&#x27;s private business" in body(response)
    assert client.get(page(bobs) + "?fragment=panes").status_code == 200


def test_workspace_and_panes_fragment(client, agent, mine):
    client.force_login(agent.user)
    workspace = body(client.get(reverse("console:home")))
    assert "Pick a conversation" in workspace
    assert f'href="{page(mine)}"' in workspace  # in the work list
    full = body(client.get(page(mine)))
    assert '<html lang="en">' in full and 'id="worklist"' in full
    assert "荷物が届きません" in timeline(full)
    panes = body(client.get(page(mine), {"fragment": "panes"}))
    assert "<html" not in panes and 'id="worklist"' not in panes
    assert "荷物が届きません" in timeline(panes) and 'id="composer"' in panes
    # The page starts the live catch-up from what it rendered.
    seen = json.loads(re.search(r'<script type="application/json" id="seen-map">(.*?)</script>', full).group(1))
    assert seen == {str(mine.pk): 1}


# --- customer content is text, never markup ----------------------------------------------------------------


def test_customer_content_is_escaped_on_the_page_the_sidebar_and_the_catchup(client, agent):
    evil = make_customer(f"Eve {XSS}")
    make_identity(evil, IdentityKind.PHONE, "+819011110000")
    conversation = make_conversation(evil, make_inbox("sms"), assignee=agent, subject=XSS)
    make_message(conversation, f"hello {XSS}")
    make_message(conversation, "", kind=MessageKind.EVENT, direction=Direction.INTERNAL,
                 event_type=EventType.TRANSFERRED, event_data={"note": XSS, "agent": XSS}, author_agent=agent)
    client.force_login(agent.user)

    html = body(client.get(page(conversation)))
    assert_escaped(timeline(html))
    assert_escaped(re.search(r'<div class="handoff".*?</div>', html, re.S).group(0))
    assert_escaped(sidebar_item(html, conversation))

    assert_escaped(sidebar_item(body(client.get(reverse("console:sidebar"))), conversation))

    response = client.get(reverse("console:catchup", args=[evil.pk]), {"seen": "{}"})
    entries = response.json()["entries"]
    assert len(entries) == 2
    for entry in entries:
        assert_escaped(entry["html"])


def _mail_with_inline_images(message_id: str, images: list[tuple[str, str, bytes]], html: str) -> bytes:
    """A multipart/related email as mailers send inline pictures: the HTML, then each part with
    its Content-ID (``images``: content id, content type, bytes)."""
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Hanako <hanako@example.jp>", "support@shop.example.jp", "Photo"
    mail["Message-ID"] = message_id
    mail.set_content("See the photo.")
    mail.add_alternative(html, subtype="html")
    rich = mail.get_payload()[1]
    for content_id, content_type, data in images:
        maintype, subtype = content_type.split("/")
        rich.add_related(data, maintype=maintype, subtype=subtype, cid=f"<{content_id}>", filename=f"{content_id}.bin")
    return bytes(mail)


def test_a_formatted_emails_inline_images_show_from_its_own_parts_only(client, agent):
    """<img src="cid:…"> shows the message's own part with that Content-ID, inside the page (data:
    URI: the frame loads nothing from the network); a cid: naming another message's part, or a
    part that is not a raster image, stays an empty image."""
    import base64

    make_inbox("email")
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    earlier = email_receive(raw=_mail_with_inline_images(
        "<earlier@example.jp>", [("secret@other", "image/png", png)], "<p>earlier</p>"))
    result = email_receive(raw=_mail_with_inline_images(
        "<photo@example.jp>",
        [("parcel.png@mail", "image/png", png), ("vector@mail", "image/svg+xml", b"<svg onload='x()'/>")],
        '<p>Box:</p><img src="cid:Parcel.png%40mail" alt="parcel"><img src="cid:vector@mail">'
        '<img src="cid:secret@other"><img src="cid:nothing@here">'))
    assert earlier.customer == result.customer  # same customer, other message
    stored = {a.content_id: a for a in result.message.attachments.all()}
    assert set(stored) == {"parcel.png@mail", "vector@mail"}
    result.conversation.assignee = agent
    result.conversation.save()
    client.force_login(agent.user)

    frame = body(client.get(reverse("console:message-html", args=[result.message.pk])))
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    assert f'<img src="{data_uri}" alt="parcel">' in frame
    assert '<img src="cid:vector@mail">' in frame  # SVG: not inlined
    assert '<img src="cid:secret@other">' in frame  # another message's part: not reachable
    assert '<img src="cid:nothing@here">' in frame
    assert frame.count("data:") == 1


def test_email_html_is_served_sanitized_in_its_own_sandbox(client, agent, stranger):
    make_inbox("email")
    result = email_receive(raw=(EMAIL_FIXTURES / "html_xss.eml").read_bytes())
    message = result.message
    assert message.html
    result.conversation.assignee = agent
    result.conversation.save()
    client.force_login(agent.user)

    # The page only links to the frame, and shows the hostile subject as text.
    html = body(client.get(page(result.conversation)))
    assert f'data-html-src="{reverse("console:message-html", args=[message.pk])}"' in html
    assert "Hello <b>agent</b>" not in html
    assert "&lt;script&gt;alert(&#x27;subject&#x27;)&lt;/script&gt;" in html
    assert "<script>alert" not in html

    response = client.get(reverse("console:message-html", args=[message.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "sandbox" in csp and "allow-scripts" not in csp and "allow-same-origin" not in csp
    assert "script-src" not in csp  # nothing may run: default-src 'none' covers scripts
    frame = body(response)
    assert "Hello <b>agent</b>" in frame
    assert message.html in frame
    for bad in ("<script", "onerror", "onclick", "javascript:", "tracker.example"):
        assert bad not in frame.lower(), bad

    # A message without an HTML part has no frame; a stranger learns nothing.
    text_only = make_message(result.conversation, "x")
    assert client.get(reverse("console:message-html", args=[text_only.pk])).status_code == 404
    client.force_login(stranger)
    response = client.get(reverse("console:message-html", args=[message.pk]))
    assert response.status_code == 404
    assert "Hello <b>agent</b>" not in body(response)


# --- query counts ------------------------------------------------------------------------------------------


def _busy_customer(agent, size: int):
    """A customer with ``size`` entries of every kind over two conversations, plus the extras the
    panes show (touchpoints, a handoff, a resolved conversation, identities)."""
    customer = make_customer(f"Busy {size}")
    make_identity(customer, IdentityKind.PHONE, f"+8190{size:08d}")
    make_identity(customer, IdentityKind.EMAIL, f"busy{size}@example.jp")
    sms = make_conversation(customer, make_inbox("sms"), assignee=agent, assigned_at=timezone.now())
    email = make_conversation(customer, make_inbox("email"), subject=f"Order {size}")
    for number in range(size):
        conversation = (sms, email)[number % 2]
        kind = number % 4
        if kind == 0:
            make_message(conversation, f"in {number}")
        elif kind == 1:
            message = make_message(conversation, f"out {number}", direction=Direction.OUTBOUND, author_agent=agent,
                                   delivery_status=DeliveryStatus.DELIVERED)
            Attachment.objects.create(message=message, filename=f"f{number}.pdf", size=10)
        elif kind == 2:
            make_message(conversation, f"note {number}", kind=MessageKind.NOTE, direction=Direction.INTERNAL,
                         author_agent=agent)
        else:
            make_message(conversation, "", kind=MessageKind.EVENT, direction=Direction.INTERNAL,
                         event_type=EventType.TRANSFERRED, event_data={"note": f"handoff {number}"}, author_agent=agent)
        make_touchpoint(customer, f"page {number}")
    return sms


def _count(client, path) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured)


def test_conversation_page_query_count_does_not_grow_with_history(client, agent, django_assert_max_num_queries):
    small, big = _busy_customer(agent, 1), _busy_customer(agent, 30)
    client.force_login(agent.user)
    for conversation in (small, big):  # warm up: session, content types, the first read mark
        client.get(page(conversation))
    counts = [_count(client, page(small)), _count(client, page(big))]
    assert counts[0] == counts[1], counts
    panes = [_count(client, page(small) + "?fragment=panes"), _count(client, page(big) + "?fragment=panes")]
    assert panes[0] == panes[1], panes
    with django_assert_max_num_queries(counts[1]):
        html = body(client.get(page(big)))
    assert timeline(html).count('class="entry ') == 50  # one page of 60 entries (30 messages, 30 touchpoints)


def _sidebar_work(agent, queue, number: int) -> None:
    customer = make_customer(f"Work {number}")
    mine = make_conversation(customer, make_inbox("sms"), assignee=agent, queue=queue)
    make_message(mine, f"mine {number}")
    make_message(mine, f"answer {number}", direction=Direction.OUTBOUND, author_agent=agent)
    offered = make_conversation(customer, make_inbox("email"), queue=queue, queued_at=timezone.now())
    make_message(offered, f"offered {number}")
    Offer.objects.create(conversation=offered, agent=agent, queue=queue, channel="email", step="queue",
                         expires_at=timezone.now() + timedelta(minutes=2))
    waiting = make_conversation(customer, make_inbox("whatsapp"), queue=queue, queued_at=timezone.now())
    make_message(waiting, f"waiting {number}")


def test_sidebar_query_count_does_not_grow_with_the_work_list(client, agent, support_queue, available_presence):
    Queue.objects.create(name="Sales", slug="sales")
    client.force_login(agent.user)
    _sidebar_work(agent, support_queue, 0)
    client.get(reverse("console:sidebar"))  # warm up
    one = _count(client, reverse("console:sidebar"))
    workspace_one = _count(client, reverse("console:home"))
    for number in range(1, 30):
        _sidebar_work(agent, support_queue, number)
    thirty = _count(client, reverse("console:sidebar"))
    workspace_thirty = _count(client, reverse("console:home"))
    assert one == thirty, (one, thirty)
    assert workspace_one == workspace_thirty, (workspace_one, workspace_thirty)
    html = body(client.get(reverse("console:sidebar")))
    assert html.count('class="work-item offer"') == 30
    assert 'data-conversation-link' in html and html.count("data-conversation-link") == 30
    assert "waiting 0" in html
    assert len(re.findall(r'action="/console/conversations/\d+/pick/"', html)) == 10  # the first ten per queue


# --- the work list -----------------------------------------------------------------------------------------


def test_sidebar_lists_my_conversations_offers_and_queues(client, agent, supervisor, support_queue):
    customer = make_customer("Taro")
    mine = make_conversation(customer, make_inbox("sms"), assignee=agent)
    make_message(mine, "inbound preview")
    make_message(mine, "my last answer", direction=Direction.OUTBOUND, author_agent=agent)
    offered = make_conversation(make_customer("Offered Person"), make_inbox("email"), queue=support_queue)
    offer = Offer.objects.create(conversation=offered, agent=agent, queue=support_queue, channel="email", step="queue",
                                 expires_at=timezone.now() + timedelta(minutes=2))
    waiting = make_conversation(make_customer("Waiting Person"), make_inbox("whatsapp"), queue=support_queue)
    make_message(waiting, "please help")
    resolved = make_conversation(customer, make_inbox("email"), assignee=agent, status=ConversationStatus.RESOLVED)
    client.force_login(agent.user)
    html = body(client.get(reverse("console:sidebar"), {"current": mine.pk}))
    item = sidebar_item(html, mine)
    assert "is-current" in item and 'aria-current="page"' in item
    assert "You:" in item and "my last answer" in item  # the last message, ours
    assert f'data-offer="{offer.pk}"' in html and "Offered Person" in html
    assert reverse("console:offer-accept", args=[offer.pk]) in html
    assert "Support" in html and "please help" in html and reverse("console:pick", args=[waiting.pk]) in html
    assert not sidebar_item(html, resolved)
    # A supervisor has no conversations of their own but sees the queues.
    client.force_login(supervisor.user)
    html = body(client.get(reverse("console:sidebar")))
    assert "Nothing assigned to you." in html and "please help" in html


def test_supervisors_see_customers_waiting_on_an_agent_who_is_away(client, agent, other_agent, supervisor,
                                                                   available_presence):
    """With the queue's "stay" policy an offline agent keeps their conversations, and an agent on a
    break keeps theirs: a customer who writes to one waits with nobody looking. Supervisors see
    them, longest waiting first, with who has them and why they are not answering."""
    on_break = PresenceState.objects.create(name="Lunch")
    Agent.objects.filter(pk=agent.pk).update(presence=on_break)
    Agent.objects.filter(pk=other_agent.pk).update(presence=available_presence)
    now = timezone.now()
    waiting_on_lunch = make_conversation(make_customer(f"Lunch waiter {XSS}"), make_inbox("sms"), assignee=agent,
                                         waiting_since=now - timedelta(minutes=7))
    make_message(waiting_on_lunch, "hello? anyone?")
    answered = make_conversation(make_customer("Answered"), make_inbox("email"), assignee=agent, waiting_since=None)
    pending = make_conversation(make_customer("Pending"), make_inbox("whatsapp"), assignee=agent,
                                status=ConversationStatus.PENDING, waiting_since=now)
    covered = make_conversation(make_customer("Covered"), make_inbox("sms", address="+815012349999"),
                                assignee=other_agent, waiting_since=now)

    client.force_login(supervisor.user)
    html = body(client.get(reverse("console:sidebar")))
    section = re.search(r'<ul class="work-items" id="unattended">(.*?)</ul>', html, re.S).group(1)
    item = sidebar_item(section, waiting_on_lunch)
    assert item and "hello? anyone?" in item and "Alice · Lunch" in item and "7\xa0minutes" in item
    assert_escaped(item)
    for not_listed in (answered, pending, covered):
        assert not sidebar_item(section, not_listed)
    assert 'id="unattended-title"' in html and '<span class="count count-waiting">1</span>' in html

    client.force_login(other_agent.user)  # agents have their own work list, not this one
    assert 'id="unattended"' not in body(client.get(reverse("console:sidebar")))


def test_unread_counts_inbound_messages_after_the_last_read_and_opening_clears_them(client, agent, mine):
    make_message(mine, "second")
    make_message(mine, "our answer", direction=Direction.OUTBOUND, author_agent=agent)
    make_message(mine, "a note", kind=MessageKind.NOTE, direction=Direction.INTERNAL, author_agent=agent)
    make_message(mine, "third")
    client.force_login(agent.user)

    def unread() -> str:
        item = sidebar_item(body(client.get(reverse("console:sidebar"))), mine)
        assert item
        match = re.search(r'<span class="unread"[^>]*>(\d+)', item)
        return match.group(1) if match else ""

    assert unread() == "3"  # three inbound messages; our reply, notes and events do not count
    html = body(client.get(page(mine)))
    assert ConversationRead.objects.get(agent=agent, conversation=mine).last_read_seq == 5
    assert 'class="unread"' not in sidebar_item(html, mine)  # the page that opened it shows it read
    assert unread() == ""
    make_message(mine, "fourth")
    assert unread() == "1"


def test_opening_a_conversation_someone_else_holds_marks_nothing_read(client, supervisor, mine):
    client.force_login(supervisor.user)
    assert client.get(page(mine)).status_code == 200
    assert not ConversationRead.objects.exists()


# --- the centre pane: reply options, handoff -------------------------------------------------------------


def test_reply_options_say_why_a_channel_is_refused(client, agent, customer):
    sms_inbox = make_inbox("sms")
    whatsapp_inbox = make_inbox("whatsapp")
    make_inbox("email")
    make_inbox("webchat")
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    make_identity(customer, IdentityKind.WHATSAPP, "+819012345678")
    make_identity(customer, IdentityKind.WEB_VISITOR, "v" * 64)
    consent_record(customer=customer, channel=Channel.EMAIL, address="hanako@example.jp",
                   status=ConsentStatus.OPTED_OUT, source="unsubscribe link")
    old_whatsapp = make_conversation(customer, whatsapp_inbox, status=ConversationStatus.RESOLVED)
    make_message(old_whatsapp, "from whatsapp", created_at=timezone.now() - timedelta(hours=25))
    conversation = make_conversation(customer, sms_inbox, assignee=agent)
    make_message(conversation, "from sms")
    client.force_login(agent.user)
    html = body(client.get(page(conversation)))
    options = {
        match.group("channel"): match.groupdict()
        for match in re.finditer(
            r'<option value="(?P<channel>\w+)" data-available="(?P<available>[01])" data-reason="(?P<reason>[^"]*)"',
            html)
    }
    assert list(options) == ["sms", "whatsapp", "email", "webchat"]  # the channel they last wrote on first
    assert options["sms"]["available"] == "1" and options["sms"]["reason"] == ""
    assert options["whatsapp"]["available"] == "0" and "24-hour window" in options["whatsapp"]["reason"]
    assert options["email"]["available"] == "0"
    assert "opted out" in options["email"]["reason"] and "unsubscribe link" in options["email"]["reason"]
    assert options["webchat"]["available"] == "0" and options["webchat"]["reason"] == "The visitor has no open chat."


def test_an_after_hours_follow_up_is_answered_by_email_first_and_says_so(client, agent, customer):
    make_inbox("email")
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    conversation = make_conversation(customer, make_inbox("sms"), assignee=agent, follow_up_at=timezone.now(),
                                     follow_up_channel="email")
    make_message(conversation, "from sms, at night")
    client.force_login(agent.user)
    html = body(client.get(page(conversation)))
    assert re.findall(r'<option value="(\w+)" data-available', html)[:2] == ["email", "sms"]
    assert "After-hours follow-up: answer by email" in html


def test_an_opt_out_is_explained_in_the_agents_language_and_time_zone(client, agent, customer):
    make_inbox("email")
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    consent = consent_record(customer=customer, channel=Channel.EMAIL, address="hanako@example.jp",
                             status=ConsentStatus.OPTED_OUT, source="unsubscribe link")
    type(consent).objects.filter(pk=consent.pk).update(changed_at=datetime(2026, 11, 1, 3, 0, tzinfo=UTC))
    conversation = make_conversation(customer, make_inbox("sms"), assignee=agent)
    client.force_login(agent.user)
    html = body(client.get(page(conversation), HTTP_ACCEPT_LANGUAGE="ja"))
    reason = re.search(r'<option value="email" data-available="0" data-reason="([^"]*)"', html).group(1)
    assert "hanako@example.jp" in reason and "2026-11-01 12:00 JST" in reason  # Tokyo, not UTC
    assert "opted out" not in reason  # in Japanese


def test_reply_option_without_an_inbox(client, agent, customer):
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    conversation = make_conversation(customer, make_inbox("sms"), assignee=agent)
    client.force_login(agent.user)
    html = body(client.get(page(conversation)))
    assert 'value="email" data-available="0" data-reason="No Email inbox is set up."' in html


def test_receiver_reads_the_handoff_note_first(client, agent, other_agent, mine):
    make_message(mine, "later message")
    conversation_transfer(conversation_id=mine.pk, by=agent, note="Refund approved, call after 6pm",
                          to_agent=other_agent)
    client.force_login(other_agent.user)
    html = body(client.get(page(mine)))
    handoff = re.search(r'<div class="handoff" role="note">.*?</div>', html, re.S)
    assert handoff and "Handoff note from Alice" in handoff.group(0)
    assert "Refund approved, call after 6pm" in handoff.group(0)
    assert html.index('class="handoff"') < html.index('id="timeline-entries"')


def test_the_handoff_note_survives_the_automatic_moves_after_it(client, agent, other_agent, supervisor, mine,
                                                                django_assert_num_queries):
    """Overflow, after-hours fallback and offline requeue are transfers without a note: the note
    an agent left before them stays on top."""
    support = Queue.objects.create(name="Support", slug="support", offline_policy="requeue", offline_grace_seconds=0)
    overflow = Queue.objects.create(name="Overflow", slug="overflow")
    Conversation.objects.filter(pk=mine.pk).update(queue=support)
    conversation_transfer(conversation_id=mine.pk, by=agent, note="Refund approved, call after 6pm",
                          to_agent=other_agent)
    # Bob goes offline: the queue takes it back (a transfer with no note) …
    offline = PresenceState.objects.create(name="Offline", is_offline=True)
    Agent.objects.filter(pk=other_agent.pk).update(
        presence=offline, presence_changed_at=timezone.now() - timedelta(minutes=5))
    assert offline_requeue() == 1
    # … nobody answers in time: it overflows (another one) …
    Queue.objects.filter(pk=support.pk).update(overflow_queue=overflow, overflow_after_seconds=0)
    route_conversation(conversation_id=mine.pk)
    mine.refresh_from_db()
    assert mine.queue == overflow and mine.assignee is None
    # … and an after-hours fallback records one more the same way.
    system_event_record(mine, EventType.TRANSFERRED, from_queue=overflow.pk, to_queue=support.pk, reason="after_hours")
    transfers = mine.messages.filter(event_type=EventType.TRANSFERRED).order_by("seq")
    reasons = [m.event_data.get("reason") for m in transfers]
    assert reasons == [None, "agent_offline", "overflow", "after_hours"]

    with django_assert_num_queries(1):
        handoff = selectors.handoff_note(mine)
    assert handoff.event_data["note"] == "Refund approved, call after 6pm" and handoff.author_agent == agent
    client.force_login(supervisor.user)
    html = body(client.get(page(mine)))
    note = re.search(r'<div class="handoff" role="note">.*?</div>', html, re.S)
    assert note and "Handoff note from Alice" in note.group(0) and "Refund approved, call after 6pm" in note.group(0)
    # A later note wins; an empty or missing one never does.
    conversation_transfer(conversation_id=mine.pk, by=supervisor, note="Second opinion: refund in full",
                          to_agent=agent, supervisor=True)
    system_event_record(mine, EventType.TRANSFERRED, to_queue=support.pk, note="")
    system_event_record(mine, EventType.TRANSFERRED, to_queue=support.pk, reason="overflow")
    with django_assert_num_queries(1):
        assert selectors.handoff_note(mine).event_data["note"] == "Second opinion: refund in full"


def test_no_handoff_box_without_any_note(client, supervisor, mine):
    system_event_record(mine, EventType.TRANSFERRED, to_queue=None, reason="overflow")
    assert selectors.handoff_note(mine) is None
    client.force_login(supervisor.user)
    assert 'class="handoff"' not in body(client.get(page(mine)))


def test_take_it_and_pick_are_offered_only_where_they_work(client, agent, supervisor, admin_user, support_queue):
    support_queue.allow_pick = False
    support_queue.save()
    conversation = make_conversation(make_customer("Waiting Person"), make_inbox("sms"), queue=support_queue,
                                     queued_at=timezone.now())
    make_message(conversation, "please help")
    pick = reverse("console:pick", args=[conversation.pk])
    assign = reverse("console:assign", args=[conversation.pk])
    # The agent serves the queue (it requires no skill), which does not let her look: only an
    # offer does, and she may look at it but not pick it.
    client.force_login(agent.user)
    assert client.get(page(conversation)).status_code == 404
    offer = Offer.objects.create(conversation=conversation, agent=agent, queue=support_queue, channel="sms",
                                 step="queue", expires_at=timezone.now() + timedelta(minutes=2))
    html = body(client.get(page(conversation)))
    assert "please help" in timeline(html)
    assert pick not in html and "Take it" not in html
    assert assign not in html and 'id="assign-dialog"' not in html and 'data-open-dialog="assign-dialog"' not in html
    assert pick not in body(client.get(reverse("console:sidebar")))
    # A supervisor takes it from the head or the work list, and may assign it to someone.
    client.force_login(supervisor.user)
    html = body(client.get(page(conversation)))
    head = re.search(r'<header class="conversation-head">.*?</header>', html, re.S).group(0)
    assert pick in head and "Take it" in head and 'data-open-dialog="assign-dialog"' in head
    assert f'action="{assign}" data-action="assign"' in html
    assert pick in body(client.get(reverse("console:sidebar")))
    # An admin without an agent profile sees the waiting conversation but is offered no Pick (it
    # could only answer "You have no agent profile").
    client.force_login(admin_user)
    sidebar_html = body(client.get(reverse("console:sidebar")))
    assert "please help" in sidebar_html and pick not in sidebar_html
    # Where the queue allows picking, the agent's "Take it" is back (with no offer to accept).
    support_queue.allow_pick = True
    support_queue.save()
    Offer.objects.filter(pk=offer.pk).update(status="rescinded")
    client.force_login(agent.user)
    head = re.search(r'<header class="conversation-head">.*?</header>', body(client.get(page(conversation))), re.S)
    assert pick in head.group(0)


def test_the_page_knows_its_agent_for_live_events(client, agent, supervisor, admin_user, mine):
    """console.js tells an offer and a missed offer only to the agent they are for (data-agent)."""
    def data_agent(html: str) -> str:
        return re.search(r'<div class="workspace-grid" id="workspace"\s+data-agent="(\d*)"', html).group(1)

    client.force_login(agent.user)
    assert data_agent(body(client.get(page(mine)))) == str(agent.pk)
    client.force_login(supervisor.user)  # a supervisor's own offers are theirs too
    assert data_agent(body(client.get(reverse("console:home")))) == str(supervisor.pk)
    client.force_login(admin_user)  # no agent profile: no offer is ever theirs
    assert data_agent(body(client.get(reverse("console:home")))) == ""
    strings = json.loads(re.search(r'<script type="application/json" id="console-strings">(.*?)</script>',
                                   body(client.get(reverse("console:home")))).group(1))
    assert strings["new_offer"] == "New conversation offered to you."
    assert strings["offer_missed"] == "An offer timed out: your status was changed."
    assert strings["assigned"] == "Assigned."
    assert strings["offers_waiting"] == "{count} offers waiting. A accepts the newest."
    japanese = json.loads(re.search(r'<script type="application/json" id="console-strings">(.*?)</script>',
                                    body(client.get(reverse("console:home"), HTTP_ACCEPT_LANGUAGE="ja"))).group(1))
    assert "{count}" in japanese["offers_waiting"] and "offers waiting" not in japanese["offers_waiting"]


# --- the right pane ----------------------------------------------------------------------------------------


def test_what_they_already_told_us(client, agent, customer):
    three_days_ago = timezone.now() - timedelta(days=3)
    old = make_conversation(customer, make_inbox("sms"), last_message_at=three_days_ago)
    make_message(old, "My parcel never arrived. It was order 77.", created_at=three_days_ago)
    WrapUpCode.objects.create(code="delivery", label="Delivery", label_translations={"ja": "配送"})
    conversation_resolve(conversation_id=old.pk, by=agent, wrap_up_code="delivery", note="Resent the parcel. Done.")
    email = make_conversation(customer, make_inbox("email"), subject="Invoice for March", assignee=agent,
                              waiting_since=timezone.now())
    make_message(email, "Hello, about the invoice")
    client.force_login(agent.user)
    html = body(client.get(page(email)))
    card = re.search(r'<section class="card card-context".*?</section>', html, re.S).group(0)
    assert "What they already told us" in card
    assert "Invoice for March" in card and "Waiting for us" in card
    assert "My parcel never arrived." in card and "order 77" not in card  # the first sentence only
    assert "Delivery · Resent the parcel." in card and "Done." not in card  # the code's label, not its slug
    assert card.index("Invoice for March") < card.index("My parcel never arrived.")  # newest first


def test_a_resolution_shows_its_wrap_up_codes_label_in_the_agents_language(client, agent, customer, mine):
    WrapUpCode.objects.create(code="order-status", label="Order status", label_translations={"ja": "注文状況"})
    conversation_resolve(conversation_id=mine.pk, by=agent, wrap_up_code="order-status", note="")
    client.force_login(agent.user)

    def resolved_text(html: str) -> str:
        texts = re.findall(r'<span class="event-text">(.*?)</span>', timeline(html), re.S)
        return next(t for t in texts if "order" in t.lower() or "注文" in t)

    english = body(client.get(page(mine)))
    assert "Order status" in resolved_text(english) and "order-status" not in resolved_text(english)
    assert "→ Order status" in re.search(r'<section class="card card-context".*?</section>', english, re.S).group(0)
    japanese = body(client.get(page(mine), HTTP_ACCEPT_LANGUAGE="ja"))
    assert "注文状況" in resolved_text(japanese) and "order-status" not in resolved_text(japanese)
    assert '<option value="order-status">注文状況</option>' in japanese  # the resolve dialog, too
    # The live path (catch-up after the event) renders it the same way.
    entries = client.get(reverse("console:catchup", args=[customer.pk]), {"seen": "{}"},
                         HTTP_ACCEPT_LANGUAGE="ja").json()["entries"]
    assert any("· 注文状況" in e["html"] for e in entries) and not any("order-status" in e["html"] for e in entries)
    # A code deleted since still says which it was.
    WrapUpCode.objects.all().delete()
    assert "order-status" in resolved_text(body(client.get(page(mine))))


def test_customer_pane_shows_other_channels_the_last_agent_activity_and_surveys(client, agent, other_agent, customer):
    earlier = make_conversation(customer, make_inbox("whatsapp"), assignee=other_agent,
                                status=ConversationStatus.RESOLVED,
                                assigned_at=timezone.now() - timedelta(days=5))
    make_message(earlier, "", kind=MessageKind.EVENT, direction=Direction.INTERNAL,
                 event_type=EventType.SURVEY_ANSWERED, event_data={"kind": "csat", "score": 5, "comment": "Very kind"})
    elsewhere = make_conversation(customer, make_inbox("email"), subject="Receipt please")
    make_touchpoint(customer, "Viewed the returns page", url="https://shop.example.jp/returns")
    conversation = make_conversation(customer, make_inbox("sms"), assignee=agent, assigned_at=timezone.now())
    client.force_login(agent.user)
    html = body(client.get(page(conversation)))
    pane = re.search(r'<aside class="pane pane-right".*?</aside>', html, re.S).group(0)
    others = re.search(r'<section class="card" aria-labelledby="elsewhere-title">.*?</section>', pane, re.S).group(0)
    assert f'href="{page(elsewhere)}"' in others and "Receipt please" in others
    assert f'href="{page(conversation)}"' not in others  # not the one on screen
    assert re.search(r"<dt>Last agent</dt><dd>Bob</dd>", pane)
    assert "Viewed the returns page" in pane and "https://shop.example.jp/returns" in pane
    assert "CSAT" in pane and "Very kind" in pane and ">5<" in pane
    # The customer page (no conversation open) has the same pane, and no composer.
    customer_page = client.get(reverse("console:customer", args=[customer.pk]), {"fragment": "panes"})
    assert customer_page.status_code == 200
    panes = body(customer_page)
    assert "<html" not in panes and "Receipt please" in panes and 'id="composer"' not in panes


def test_first_contact_has_nothing_earlier(client, agent, customer):
    conversation = make_conversation(customer, make_inbox("sms"), assignee=agent)
    client.force_login(agent.user)
    html = body(client.get(page(conversation)))
    assert "First contact: nothing earlier." in html


# --- canned responses ----------------------------------------------------------------------------------------


def test_canned_responses_fill_in_the_variables(client, agent, mine):
    CannedResponse.objects.create(shortcode="hello", title="Greeting",
                                  text="Hello {customer_name} ({customer_first_name}), this is {agent_name}.")
    CannedResponse.objects.create(shortcode="jp", title="挨拶", language="ja", text="{customer_first_name}様")
    CannedResponse.objects.create(shortcode="thanks", title="Thanks", language="en", text="Thanks, {agent_name}")
    CannedResponse.objects.create(shortcode="off", title="Retired", text="old", is_active=False)
    client.force_login(agent.user)
    response = client.get(reverse("console:canned"), {"conversation": mine.pk})
    assert response.status_code == 200
    responses = {r["shortcode"]: r for r in response.json()["responses"]}
    assert set(responses) == {"hello", "jp", "thanks"}
    assert responses["hello"]["text"] == "Hello 山田 花子 (山田), this is Alice."
    assert responses["jp"]["text"] == "山田様"
    assert responses["thanks"]["text"] == "Thanks, Alice"
    # Responses in the agent's language (or in none) first, the other languages after.
    assert [r["shortcode"] for r in response.json()["responses"]] == ["hello", "thanks", "jp"]
    japanese = client.get(reverse("console:canned"), {"conversation": mine.pk}, HTTP_ACCEPT_LANGUAGE="ja").json()
    assert [r["shortcode"] for r in japanese["responses"]] == ["hello", "jp", "thanks"]
    # Without a conversation there is nobody to name.
    plain = client.get(reverse("console:canned")).json()["responses"]
    assert {r["shortcode"]: r["text"] for r in plain}["hello"] == "Hello there (there), this is Alice."


def test_a_nameless_customer_is_greeted_in_the_responses_own_language(client, agent):
    """お客様 already is the honorific: a Japanese template's own 様 is not doubled, and an English
    screen does not put "there" into a Japanese greeting."""
    from profiles.models import Customer

    nameless = make_conversation(Customer.objects.create(display_name=""), make_inbox("sms"), assignee=agent)
    CannedResponse.objects.create(shortcode="aisatsu", title="ご挨拶", language="ja",
                                  text="{customer_name}様、お問い合わせありがとうございます。")
    CannedResponse.objects.create(shortcode="hello", title="Greeting", language="en", text="Hello {customer_name}!")
    client.force_login(agent.user)
    for screen in ("en", "ja"):
        texts = {r["shortcode"]: r["text"] for r in client.get(
            reverse("console:canned"), {"conversation": nameless.pk}, HTTP_ACCEPT_LANGUAGE=screen).json()["responses"]}
        assert texts == {"aisatsu": "お客様、お問い合わせありがとうございます。", "hello": "Hello there!"}


def test_canned_variables_are_not_markup(client, agent):
    evil = make_customer(XSS)
    conversation = make_conversation(evil, make_inbox("sms"), assignee=agent)
    CannedResponse.objects.create(shortcode="hello", title="Greeting", text="Hi {customer_name}")
    client.force_login(agent.user)
    response = client.get(reverse("console:canned"), {"conversation": conversation.pk})
    assert response["Content-Type"] == "application/json"
    assert response.json()["responses"][0]["text"] == f"Hi {XSS}"  # data; the script inserts it as text


def test_an_offers_outcome_reads_on_the_timeline(client, agent, supervisor, support_queue):
    """Offered, then timed out: two entries that said the same ("Offered · Alice") now say what
    became of the offer, in the agent's language."""
    from conversations.models import Offer, PresenceState
    from conversations.routing.presence import offers_expire

    available = PresenceState.objects.create(name="Available", is_available=True)
    agent.presence = available
    agent.save()
    conversation = make_conversation(make_customer("Waiting Person"), make_inbox("sms"), queue=support_queue,
                                     queued_at=timezone.now())
    offer = route_conversation(conversation_id=conversation.pk).offer
    assert offer is not None and offer.agent_id == agent.pk
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    offers_expire()
    client.force_login(supervisor.user)
    entries = re.findall(r'<span class="event-text">(.*?)</span>', timeline(body(client.get(page(conversation)))), re.S)
    assert any(text.startswith("Offered: Timed out") for text in entries), entries
    assert any(text.startswith("Offered ·") or text == "Offered" or text.startswith("Offered →") for text in entries)
    supervisor.ui_language = "ja"
    supervisor.save()
    client.force_login(supervisor.user)
    html = body(client.get(page(conversation), HTTP_ACCEPT_LANGUAGE="ja"))
    assert "タイムアウト" in timeline(html)
