"""Console details a new agent tripped over (issue 21): several offers at once make one toast that
counts them and `a` accepts the one on screen or the newest, not silently the oldest; a live
message in the conversation being read is not unread in "My conversations"; a resolved
conversation's composer says a reply reopens it, and it does."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import ConversationStatus, Offer, OfferStatus
from profiles.models import IdentityKind

from ..conftest import wait_for
from ..factories import (
    PASSWORD,
    make_conversation,
    make_customer,
    make_identity,
    make_message,
)
from .conftest import login, screenshot, wait_connected
from .seeding import console_agent, presences, support_desk, text_in
from .test_routing_live import console_page, toasts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs in every page before its own scripts: whether an unread badge ever appeared in a work-list
# item (the list is replaced on every refresh, so "never shown" cannot be read off the page later).
UNREAD_RECORDER = """
window.__unreadSeen = {};
new MutationObserver(function () {
  document.querySelectorAll("#my-conversations .work-item .unread").forEach(function (badge) {
    window.__unreadSeen[badge.closest(".work-item").getAttribute("data-conversation")] = true;
  });
}).observe(document, { childList: true, subtree: true });
"""


def waiting_conversation(desk, name: str, phone: str, text: str):
    customer = make_customer(name)
    make_identity(customer, IdentityKind.PHONE, phone, verified=True)
    conversation = make_conversation(customer, desk.sms, queue=desk.queue, queued_at=timezone.now())
    make_message(conversation, text)
    return conversation


def test_several_offers_make_one_counting_toast_and_a_accepts_the_newest_or_the_one_on_screen(
        new_context, browser_server):
    states = presences()
    desk = support_desk()
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[desk.skill])
    for index, name in enumerate(["Ken Sato", "Yui Mori", "Tom Baker"]):
        waiting_conversation(desk, name, f"+8190876543{index:02d}", f"Question number {index + 1}")

    page = console_page(new_context, "alice")
    page.locator("#presence-select").select_option(label="Available")
    wait_for(lambda: Offer.objects.filter(agent=alice, status=OfferStatus.PENDING).count() == 3, timeout=30)
    offers_toast = page.locator('#toasts [data-toast="offers"]')
    expect(offers_toast).to_have_text("3 offers waiting. A accepts the newest.")
    expect(page.locator("#offers [data-offer]")).to_have_count(3)
    screenshot(page, "console-details-01-offers")
    # One toast, counting: never one per offer.
    assert len(page.locator("#toasts .toast").all()) == 1
    assert len([t for t in toasts(page) if "offer" in t.lower()]) == 1, toasts(page)

    # `a` with no conversation open: the newest announced offer, the one marked in the list.
    newest = page.evaluate("() => window.ccConsole.state.announced.slice(-1)[0]")
    listed = page.locator("#offers [data-offer]").evaluate_all("(items) => items.map((i) => i.dataset.offer)")
    assert newest == listed[-1] != listed[0]  # routed one after another: the oldest is listed first
    expect(page.locator("#offers .is-shortcut-target")).to_have_attribute("data-offer", newest)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # off the status menu
    page.keyboard.press("a")
    wait_for(lambda: Offer.objects.get(pk=int(newest)).status == OfferStatus.ACCEPTED)
    accepted = Offer.objects.get(pk=int(newest))
    expect(page.locator(f"#conversation-pane[data-conversation='{accepted.conversation_id}']")).to_be_visible()
    assert Offer.objects.filter(agent=alice, status=OfferStatus.PENDING).count() == 2
    expect(page.locator("#offers [data-offer]")).to_have_count(2)

    # The oldest offer, opened from the list: `a` accepts the one on screen.
    oldest = listed[0]
    page.locator(f'#offers [data-offer="{oldest}"] a').click()
    expect(page.locator(".conversation-actions form[data-action=accept]")).to_be_visible()
    page.locator("#timeline-scroll").focus()
    page.keyboard.press("a")
    wait_for(lambda: Offer.objects.get(pk=int(oldest)).status == OfferStatus.ACCEPTED)
    assert Offer.objects.get(pk=int(listed[1])).status == OfferStatus.PENDING


def test_a_message_in_the_open_conversation_is_read_and_a_resolved_composer_says_a_reply_reopens_it(
        new_context, browser_server):
    states = presences()
    desk = support_desk()
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.available, skills=[desk.skill])
    reading = make_conversation(make_customer("Ken Sato"), desk.sms, assignee=alice, assigned_at=timezone.now())
    make_identity(reading.customer, IdentityKind.PHONE, "+819087650001", verified=True)
    make_message(reading, "My order SO-88 never arrived.")
    elsewhere = make_conversation(make_customer("Yui Mori"), desk.sms, assignee=alice, assigned_at=timezone.now())
    make_identity(elsewhere.customer, IdentityKind.PHONE, "+819087650002", verified=True)
    make_message(elsewhere, "Hello?")

    context = new_context()
    context.add_init_script(UNREAD_RECORDER)
    page = context.new_page()
    login(page, "alice", PASSWORD)
    page.goto(f"/console/conversations/{reading.pk}/")
    wait_connected(page)
    page.evaluate("() => { window.__unreadSeen = {}; }")  # from here on: the page was opened, so read

    # The customer writes in the conversation Alice reads, then in her other one.
    text_in(browser_server.base_url, sender="+819087650001", to=desk.sms.address, body="Any news? 連絡ください。")
    expect(page.locator("#timeline-entries")).to_contain_text("Any news? 連絡ください。")
    mine = page.locator(f'#my-conversations .work-item[data-conversation="{reading.pk}"]')
    expect(mine).to_contain_text("Any news?")  # the work list was refreshed with it
    text_in(browser_server.base_url, sender="+819087650002", to=desk.sms.address, body="Still there?")
    other = page.locator(f'#my-conversations .work-item[data-conversation="{elsewhere.pk}"]')
    expect(other.locator(".unread")).to_have_text("1 unread")  # unread elsewhere: counted as before
    assert mine.locator(".unread").count() == 0
    assert page.evaluate("() => window.__unreadSeen") == {str(elsewhere.pk): True}

    # Resolve: the composer says the conversation is resolved and what sending does.
    composer = page.locator("#composer")
    expect(page.locator("#composer-resolved")).to_be_hidden()
    page.keyboard.press("e")
    page.locator("#resolve-dialog button[type=submit]").click()
    expect(page.locator(".conversation-head [data-status]")).to_have_text("Resolved")
    expect(page.locator("#composer-resolved")).to_be_visible()
    expect(page.locator("#composer-resolved")).to_contain_text("Sending a reply reopens it")
    expect(page.locator("#composer-send")).to_contain_text("Send and reopen", use_inner_text=True)
    screenshot(page, "console-details-02-resolved-composer")
    # A private note leaves it resolved, and the button says "Send".
    page.keyboard.press("n")
    expect(page.locator("#composer-send")).not_to_contain_text("reopen", use_inner_text=True)
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    expect(page.locator("#composer-send")).to_contain_text("Send and reopen", use_inner_text=True)
    composer.locator("#composer-text").fill("One more thing: it ships tomorrow.")
    page.locator("#composer-send").click()
    expect(page.locator(".conversation-head [data-status]")).to_have_text("Open")
    expect(page.locator("#composer-resolved")).to_be_hidden()
    expect(page.locator("#composer-send")).not_to_contain_text("reopen", use_inner_text=True)
    reading.refresh_from_db()
    assert reading.status == ConversationStatus.OPEN
