"""Customer content is text: markup and script in an SMS show as characters and run nothing, live
or server-rendered; an HTML email is shown only in a sandboxed frame that runs nothing either."""

import pytest
from playwright.sync_api import expect

from conversations.models import Channel, Message
from conversations.channels.email.ingest import email_receive
from profiles.models import IdentityKind

from ..conftest import wait_for
from ..factories import PASSWORD, make_customer, make_identity, make_inbox
from .conftest import csp_violations, login, off_the_browser_thread, screenshot
from .seeding import console_agent, presences, support_desk, text_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script><b>bold</b>'
HOSTILE_LIVE = '<svg onload="window.__pwned=2"></svg><iframe srcdoc="<script>parent.__pwned=3</script>"></iframe>'
EMAIL_SUBJECT = 'Order <b>SO-7</b> <script>window.__pwned="subject"</script>'

RAW_EMAIL = f"""From: =?utf-8?b?5bGx55SwIOiKseWtkA==?= <hanako.yamada@example.jp>
To: support@shop.example.jp
Subject: {EMAIL_SUBJECT}
Date: Mon, 23 Nov 2026 10:30:00 +0900
Message-ID: <hostile-1@example.jp>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Formatted order summary attached. <script>window.__pwned="text"</script>

--b1
Content-Type: text/html; charset=utf-8

<html><head><script>parent.__pwned="head"</script></head>
<body onload="parent.__pwned='onload'"><p><b>Formatted</b> order summary</p>
<img src="x" onerror="parent.__pwned='img'"><svg onload="parent.__pwned='svg'"></svg>
<script>parent.__pwned="body"</script><a href="javascript:parent.__pwned='link'">track</a></body></html>
--b1--
""".replace("\n", "\r\n").encode()


def _assert_nothing_ran(page) -> None:
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("#timeline-entries script, #timeline-entries svg, #timeline-entries .body b").count() == 0
    assert csp_violations(page) == []


def test_markup_and_script_from_customers_show_as_text_and_run_nothing(new_context, browser_server):
    states = presences()
    desk = support_desk(auto_accept=True)
    console_agent("alice", display_name="Alice Tanaka", presence=states.available, skills=[desk.skill])
    customer = make_customer("山田 花子", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819012345678", verified=True)
    make_identity(customer, IdentityKind.EMAIL, "hanako.yamada@example.jp", verified=True)
    email = off_the_browser_thread(email_receive, raw=RAW_EMAIL, inbox=make_inbox(Channel.EMAIL)).message
    assert email.customer_id == customer.pk and email.html and "<script" not in email.html

    page = new_context().new_page()
    login(page, "alice", PASSWORD)

    # Through the real webhook; the queue assigns it to Alice, whose work list updates live.
    text_in(browser_server.base_url, sender="+819012345678", to=desk.sms.address, body=HOSTILE)
    sms = wait_for(lambda: Message.objects.filter(channel=Channel.SMS, text=HOSTILE).first())
    item = page.locator(f"#my-conversations .work-item[data-conversation='{sms.conversation_id}']")
    expect(item.locator(".preview")).to_contain_text('<img src=x onerror="window.__pwned=1"><script>')
    item.locator("a[data-nav]").click()
    entry = page.locator("#timeline-entries .entry.in-current").filter(has_text="window.__pwned=1")
    expect(entry.locator(".body")).to_have_text(HOSTILE)

    # A second one arrives while the conversation is open: inserted live, still text.
    text_in(browser_server.base_url, sender="+819012345678", to=desk.sms.address, body=HOSTILE_LIVE)
    live = page.locator("#timeline-entries .entry.is-new").filter(has_text="parent.__pwned=3")
    expect(live.locator(".body")).to_have_text(HOSTILE_LIVE)

    # The email: subject and plain text as characters.
    mail = page.locator("#timeline-entries .entry").filter(has_text="Formatted order summary attached.")
    expect(mail.locator(".subject")).to_contain_text(EMAIL_SUBJECT)
    expect(mail.locator(".body")).to_contain_text('<script>window.__pwned="text"</script>')
    _assert_nothing_ran(page)
    screenshot(page, "hostile-01-as-text")

    # Its HTML only on request, in a sandboxed frame without scripts or same-origin access.
    mail.locator("details[data-html-src] summary").click()
    frame = mail.locator("iframe.email-frame")
    expect(frame).to_have_attribute("sandbox", "allow-popups allow-popups-to-escape-sandbox")
    expect(page.frame_locator("iframe.email-frame").locator("b")).to_have_text("Formatted")
    assert frame.evaluate("el => el.contentDocument === null")  # opaque origin: the page cannot reach in
    assert page.frame_locator("iframe.email-frame").locator("script, svg, img[src=x], [onload]").count() == 0
    _assert_nothing_ran(page)
    screenshot(page, "hostile-02-formatted-email")

    # Server-rendered after a reload: the same text, nothing run.
    page.reload()
    expect(page.locator("#timeline-entries .entry.in-current .body").filter(has_text="parent.__pwned=3")).to_have_count(1)
    expect(item.locator(".preview")).to_contain_text("<svg onload=")
    _assert_nothing_ran(page)
    assert Message.objects.filter(channel=Channel.SMS, text__in=[HOSTILE, HOSTILE_LIVE]).count() == 2
