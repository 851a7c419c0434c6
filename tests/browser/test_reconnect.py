"""A dropped websocket loses nothing and repeats nothing: messages that arrive while the console is
offline appear once each after it reconnects, without a reload."""

import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Channel, Conversation, Message
from profiles.models import IdentityKind

from ..conftest import wait_for
from ..factories import PASSWORD, make_conversation, make_customer, make_identity, make_message, make_user
from .conftest import login, screenshot, wait_connected
from .seeding import console_agent, presences, server_password_hash, support_desk, text_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WHILE_OFFLINE = ["First while you were away: the parcel came back to the depot.",
                 "Second while you were away: 再配達は土曜日の午前中にお願いします。"]


class SocketSwitch:
    """The console's websocket through Playwright's websocket routing: connected to the server
    while on; ``cut`` closes the open one at both ends and refuses reconnections until ``restore``.
    (Route handlers run while Playwright is called: an attempt made during a plain ``sleep`` waits
    for the next browser call, as it would on a slow network.)"""

    def __init__(self):
        self.on = True
        self.open = []
        self.refused = 0

    def route(self, ws):
        if not self.on:
            self.refused += 1
            ws.close(code=4000, reason="test: network down")
            return
        self.open.append((ws, ws.connect_to_server()))

    def cut(self):
        self.on = False
        for page_side, server_side in self.open:
            server_side.close(code=1000, reason="test: network down")  # a browser may close with 1000 only
            page_side.close(code=4000, reason="test: network down")
        self.open.clear()

    def restore(self):
        self.on = True


def test_messages_sent_while_the_socket_is_down_appear_once_after_it_reconnects(new_context, browser_server):
    states = presences()
    desk = support_desk()
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.available, skills=[desk.skill])
    customer = make_customer("佐藤 健", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819087654321", verified=True)
    conversation = make_conversation(customer, desk.sms, queue=desk.queue, assignee=alice, assigned_at=timezone.now())
    make_message(conversation, "Where is my parcel? 荷物はどこですか")

    context = new_context()
    switch = SocketSwitch()
    context.route_web_socket(re.compile(r"/ws/console/$"), switch.route)
    page = context.new_page()
    login(page, "alice", PASSWORD)
    page.goto(f"/console/conversations/{conversation.pk}/")
    wait_connected(page)
    expect(page.locator("#timeline-entries")).to_contain_text("Where is my parcel?")
    page.evaluate("() => { window.__marker = 1; }")

    # The connection drops: closed at both ends (daphne logs the disconnect), and the console's
    # reconnection attempts are refused until the switch is back on. (context.set_offline() does
    # not do it: chromium keeps an open websocket, and lets a new one through, while "offline".)
    switch.cut()
    page.wait_for_function("() => window.ccConsole.state.connected === false")
    expect(page.locator("#connection")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Reconnecting…")

    for text in WHILE_OFFLINE:
        text_in(browser_server.base_url, sender="+819087654321", to=desk.sms.address, body=text)
    wait_for(lambda: Message.objects.filter(conversation=conversation, text__in=WHILE_OFFLINE).count() == 2)
    time.sleep(1)  # the events went out to nobody; nothing may arrive while the socket is down
    for text in WHILE_OFFLINE:
        expect(page.locator("#timeline-entries > li").filter(has_text=text)).to_have_count(0)
    screenshot(page, "reconnect-01-offline")

    assert switch.refused >= 1, "the console did not try to reconnect while the socket was down"
    switch.restore()
    expect(page.locator("#connection")).to_be_hidden(timeout=30_000)
    for text in WHILE_OFFLINE:
        expect(page.locator("#timeline-entries > li").filter(has_text=text)).to_have_count(1)
    time.sleep(1.5)  # a late live event or a second catch-up must not add a copy
    for text in WHILE_OFFLINE:
        assert page.locator("#timeline-entries > li").filter(has_text=text).count() == 1
    assert page.evaluate("() => window.__marker") == 1  # no reload
    screenshot(page, "reconnect-02-caught-up")
    assert conversation.messages.filter(channel=Channel.SMS, text__in=WHILE_OFFLINE).count() == 2


def test_signing_out_in_another_tab_takes_the_console_to_the_login_page(new_context, browser_server):
    """The console's socket was authorised by the session that signing out ends: the server closes
    it at once (nothing more about customers reaches the page) and the page goes to the login page
    instead of "Reconnecting…" forever. A supervisor without an agent profile: no presence change
    makes the page fetch anything that would find out otherwise."""
    support_desk()
    sam = make_user("sam", role="supervisor", is_staff=True)
    sam.password = server_password_hash()
    sam.save(update_fields=["password"])
    context = new_context()
    page = context.new_page()
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    login(page, "sam", PASSWORD)
    assert len(sockets) == 1
    other_tab = context.new_page()
    other_tab.goto("/console/")
    other_tab.get_by_role("button", name="Sign out").click()
    other_tab.wait_for_url("**/accounts/login/")

    page.wait_for_url(lambda url: url.endswith("/accounts/login/?next=%2Fconsole%2F"))
    expect(page.locator(".auth-card form")).to_be_visible()
    assert len(sockets) == 1  # it did not try to reconnect


def test_an_event_lost_with_the_socket_up_is_caught_up_by_the_sync(new_context, browser_server):
    """A message stored with no live event published (a worker killed between its commit and the
    publish, or a publish into a restarting Redis) and a conversation assigned the same way: the
    console's sync (/console/sync/, on a timer) finds both, with no reconnect and no reload."""
    states = presences()
    desk = support_desk()
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.available, skills=[desk.skill])
    customer = make_customer("佐藤 健", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819087654321", verified=True)
    conversation = make_conversation(customer, desk.sms, queue=desk.queue, assignee=alice, assigned_at=timezone.now())
    make_message(conversation, "Where is my parcel? 荷物はどこですか")

    page = new_context().new_page()
    login(page, "alice", PASSWORD)
    page.goto(f"/console/conversations/{conversation.pk}/")
    wait_connected(page)
    assert int(page.locator("#workspace").get_attribute("data-sync-seconds")) > 0  # the timer is on
    page.evaluate("() => { window.__marker = 1; }")

    # Straight into the database: no event leaves (the factories publish nothing).
    make_message(conversation, "Lost on the way: the live event never left.")
    other = make_customer("Kenji Mori")
    make_conversation(other, desk.sms, queue=desk.queue, assignee=alice, assigned_at=timezone.now(),
                      subject="Assigned while the event was lost")
    make_message(Conversation.objects.get(customer=other), "A conversation nobody told the console about.")
    time.sleep(1)
    expect(page.locator("#timeline-entries > li").filter(has_text="Lost on the way")).to_have_count(0)
    expect(page.locator("#my-conversations")).not_to_contain_text("Kenji Mori")

    page.evaluate("() => window.ccConsole.syncWork()")  # what the timer calls
    expect(page.locator("#timeline-entries > li").filter(has_text="Lost on the way")).to_have_count(1)
    expect(page.locator("#my-conversations")).to_contain_text("Kenji Mori")
    page.evaluate("() => window.ccConsole.syncWork()")  # nothing new: nothing changes, nothing repeats
    time.sleep(1)
    expect(page.locator("#timeline-entries > li").filter(has_text="Lost on the way")).to_have_count(1)
    assert page.evaluate("() => window.__marker") == 1  # no reload
