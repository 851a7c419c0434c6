"""Routing, live in the console: an offer is announced to the agent it is for (not to the
supervisors or whoever watches the conversation), "your status was changed" only when it was, and
routing decisions (offered, timed out, assigned, resolved) appear by themselves, once each, in a
timeline that is open. A supervisor assigns a waiting conversation from its head, by keyboard."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Agent, EventType, Message, Offer, OfferStatus, PresenceState
from profiles.models import IdentityKind

from ..conftest import wait_for
from ..factories import PASSWORD, make_conversation, make_customer, make_identity, make_message
from .conftest import login, screenshot, wait_connected
from .seeding import console_agent, presences, support_desk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_OFFER = "New conversation offered to you."
STATUS_CHANGED = "An offer timed out: your status was changed."
FIRST_TEXT = "My order SO-88 never arrived. 注文が届いていません。"

# Runs in every page before its own scripts: every toast the page shows, in order (they vanish
# after five seconds, so "never shown" cannot be read off the page afterwards).
TOAST_RECORDER = """
window.__toasts = [];
new MutationObserver(function (records) {
  records.forEach(function (record) {
    record.addedNodes.forEach(function (node) {
      if (node.nodeType === 1 && node.classList.contains("toast")) window.__toasts.push(node.textContent);
    });
  });
}).observe(document, { childList: true, subtree: true });
"""


def toasts(page) -> list[str]:
    return page.evaluate("() => window.__toasts.slice()")


def wait_toast(page, text: str) -> None:
    page.wait_for_function("(text) => window.__toasts.some((t) => t.indexOf(text) >= 0)", arg=text)


def console_page(new_context, username: str):
    context = new_context()
    context.add_init_script(TOAST_RECORDER)
    page = context.new_page()
    login(page, username, PASSWORD)
    return page


def entry(page, message: Message):
    return page.locator(f'#timeline-entries > li[data-key="m-{message.pk}"]')


def routing_event(conversation, **match) -> Message:
    """The conversation's timeline event matching ``match`` (waits for the server to write it)."""
    return wait_for(lambda: Message.objects.filter(conversation=conversation, **match).order_by("seq").last())


def test_offer_toasts_reach_their_agent_only_and_routing_decisions_appear_live_in_an_open_timeline(
        new_context, browser_server):
    states = presences()
    desk = support_desk()
    desk.queue.offer_timeout_seconds = 3
    desk.queue.save(update_fields=["offer_timeout_seconds"])
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[desk.skill])
    carol = console_agent("carol", display_name="Carol Sato", presence=states.offline, skills=[],
                          role="supervisor")
    customer = make_customer("佐藤 健", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819087654321", verified=True)
    conversation = make_conversation(customer, desk.sms, queue=desk.queue, queued_at=timezone.now())
    make_message(conversation, FIRST_TEXT)

    # Carol, a supervisor, has the waiting conversation open.
    carol_page = console_page(new_context, "carol")
    carol_page.goto(f"/console/conversations/{conversation.pk}/")
    wait_connected(carol_page)
    expect(carol_page.locator("#timeline-entries")).to_contain_text(FIRST_TEXT)
    carol_page.evaluate("() => { window.__marker = 1; }")

    # Alice goes available: the conversation is offered to her. She is told; Carol (supervisors'
    # group, and watching the conversation) is not, but sees the decision appear on the timeline.
    alice_page = console_page(new_context, "alice")
    alice_page.locator("#presence-select").select_option(label="Available")
    wait_toast(alice_page, NEW_OFFER)
    offered = routing_event(conversation, event_type=EventType.OFFERED, author_agent=alice)
    expect(entry(carol_page, offered)).to_have_count(1)
    expect(entry(carol_page, offered)).to_contain_text("Offered")
    screenshot(carol_page, "routing-live-01-offered")

    # Nobody answers: the tick times the offer out and sets Alice's status to "Missed offer".
    # Only Alice hears about her status; Carol sees the timeout on the timeline.
    offer = Offer.objects.get(conversation=conversation, agent=alice)
    wait_for(lambda: Offer.objects.get(pk=offer.pk).status == OfferStatus.TIMEOUT, timeout=30)
    wait_toast(alice_page, STATUS_CHANGED)
    assert Agent.objects.get(pk=alice.pk).presence.name == "Missed offer"
    timed_out = routing_event(conversation, event_type=EventType.OFFERED, event_data__outcome=OfferStatus.TIMEOUT)
    expect(entry(carol_page, timed_out)).to_have_count(1)

    # Carol assigns it to Alice from the conversation head, by keyboard.
    carol_page.locator(".conversation-head button[data-open-dialog=assign-dialog]").focus()
    carol_page.keyboard.press("Enter")
    dialog = carol_page.locator("#assign-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#assign-agent").select_option(str(alice.pk))
    dialog.locator("#assign-note").fill("Missed it while on the phone: please call back.")
    screenshot(carol_page, "routing-live-02-assign-dialog")
    dialog.locator("button[type=submit]").focus()
    carol_page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(carol_page.locator(".conversation-head")).to_contain_text("Assigned to Alice Tanaka")
    wait_toast(carol_page, "Assigned.")
    assigned = routing_event(conversation, event_type=EventType.ASSIGNED)
    assert assigned.author_agent_id == carol.pk and assigned.event_data["via"] == "manual"
    expect(entry(carol_page, assigned)).to_have_count(1)

    # Alice has it in her list by itself; she opens it and resolves. Carol, who did nothing, sees
    # the resolution appear on her open timeline.
    mine = alice_page.locator(f'#my-conversations a[href="/console/conversations/{conversation.pk}/"]')
    expect(mine).to_be_visible()
    mine.click()
    expect(alice_page.locator(f"#conversation-pane[data-conversation='{conversation.pk}']")).to_be_visible()
    alice_page.keyboard.press("e")
    alice_page.locator("#resolve-dialog button[type=submit]").click()
    expect(alice_page.locator(".conversation-head [data-status]")).to_have_text("Resolved")
    resolved = routing_event(conversation, event_type=EventType.RESOLVED)
    expect(entry(carol_page, resolved)).to_have_count(1)
    expect(carol_page.locator(".conversation-head [data-status]")).to_have_text("Resolved")
    screenshot(carol_page, "routing-live-03-resolved")

    # Everything once, nothing twice, without a reload; and none of Alice's news in Carol's toasts.
    time.sleep(1.5)  # a late event or a second catch-up must not add a copy
    for message in Message.objects.filter(conversation=conversation):
        assert entry(carol_page, message).count() == 1, (message.kind, message.event_type, message.event_data)
    assert carol_page.evaluate("() => window.__marker") == 1
    assert not [t for t in toasts(carol_page) if NEW_OFFER in t or STATUS_CHANGED in t], toasts(carol_page)


def test_an_offer_that_times_out_without_changing_the_agents_status_says_nothing_about_it(
        new_context, browser_server):
    """offers_expire changes the status only of an agent who was available (as offer_accept keeps
    it for one who answered too late): an ``offer.timeout`` alone never says it changed."""
    busy = PresenceState.objects.create(name="In a meeting", is_available=False, ordering=10)
    desk = support_desk()
    alice = console_agent("alice", display_name="Alice Tanaka", presence=busy, skills=[desk.skill])
    customer = make_customer("Ken Sato")
    make_identity(customer, IdentityKind.PHONE, "+819087654321", verified=True)
    conversation = make_conversation(customer, desk.sms, queue=desk.queue, queued_at=timezone.now())
    make_message(conversation, FIRST_TEXT)
    offer = Offer.objects.create(conversation=conversation, agent=alice, queue=desk.queue, channel="sms", step="queue",
                                 expires_at=timezone.now() + timedelta(minutes=5))

    alice_page = console_page(new_context, "alice")
    pending = alice_page.locator(f'#offers [data-offer="{offer.pk}"]')
    expect(pending).to_have_count(1)
    # Due now: the next tick times it out. Alice was not available, so her status stays.
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    wait_for(lambda: Offer.objects.get(pk=offer.pk).status == OfferStatus.TIMEOUT, timeout=30)
    expect(pending).to_have_count(0)  # the offer.timeout event arrived: the work list was refreshed
    time.sleep(1)
    assert Agent.objects.get(pk=alice.pk).presence_id == busy.pk
    assert not [t for t in toasts(alice_page) if STATUS_CHANGED in t], toasts(alice_page)


@pytest.mark.production  # the notice is kept in the cache the server shares only in production mode (Redis)
def test_an_agent_set_offline_while_no_console_was_open_is_told_why_when_they_come_back(new_context, browser_server):
    """The tick put Alice offline while none of her consoles was open (services.presence); the
    first console she opens gets the presence event again with the reason in her language, and
    shows it."""
    from conversations.routing import console_presence as presence

    states = presences()
    desk = support_desk()
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[desk.skill])
    alice.refresh_from_db()
    presence._notice_keep(alice.pk, {
        "event": {"type": "agent.presence", "agent": alice.pk, "presence": states.offline.pk,
                  "name": states.offline.name, "available": False, "reason": presence.REASON_DISCONNECTED},
        "changed_at": alice.presence_changed_at.isoformat(),
    })
    page = console_page(new_context, "alice")
    wait_toast(page, "no console of yours was open for a while")
    assert [t for t in toasts(page) if "Offline" in t], toasts(page)
