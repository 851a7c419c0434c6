"""The supervisor's wallboard, live in a browser: a customer who texts in appears on the board
without a reload, the supervisor assigns them from it, and the agent's console gets the
conversation by itself. The page passes axe in English and Japanese."""

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, EventType, Message
from supervisor.facts.models import AgentPresenceChange

from ..conftest import wait_for
from ..factories import PASSWORD
from .axe import assert_accessible
from .conftest import csp_violations, login, screenshot
from .seeding import console_agent, presences, support_desk, text_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def wallboard_page(new_context, username: str, **options):
    page = new_context(bypass_csp=False, **options).new_page()
    login(page, username, PASSWORD)
    page.goto("/supervisor/")
    expect(page.locator("#wallboard-state")).to_have_attribute("data-state", "live")
    return page


def test_a_new_waiting_customer_appears_live_and_the_supervisor_assigns_it_to_an_agent(new_context, browser_server):
    states = presences()
    desk = support_desk()
    # Alice is offline: routing finds nobody, so the customer waits in the queue.
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[desk.skill])
    carol = console_agent("carol", display_name="Carol Sato", presence=states.offline, skills=[], role="supervisor")

    board = wallboard_page(new_context, "carol")
    board.evaluate("() => { window.__marker = 1; }")
    support = board.locator(f'#wallboard-live tr[data-queue="{desk.queue.pk}"]')
    expect(support.locator('[data-field="waiting"]')).to_have_text("0")

    alice_page = new_context().new_page()
    login(alice_page, "alice", PASSWORD)

    text_in(browser_server.base_url, sender="+819011112222", to=desk.sms.address, body="Where is my order?")
    conversation = wait_for(lambda: Conversation.objects.filter(inbox=desk.sms).first())
    waiting = board.locator(f'#wallboard-live .waiting-list li[data-conversation="{conversation.pk}"]')
    expect(waiting).to_be_visible()
    expect(support.locator('[data-field="waiting"]')).to_have_text("1")
    expect(support.locator('[data-field="offered"]')).to_have_text("1")
    screenshot(board, "wallboard-01-waiting")

    waiting.locator("button[data-manage]").click()
    dialog = board.locator("#manage-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#manage-agent").select_option(str(alice.pk))
    dialog.locator("#manage-assign-note").fill("Please take this one.")
    dialog.locator("#manage-agent").locator("xpath=ancestor::form").locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()

    # The agent's console has it by itself; the board shows it with Alice and no longer waiting.
    mine = alice_page.locator(f'#my-conversations a[href="/console/conversations/{conversation.pk}/"]')
    expect(mine).to_be_visible()
    expect(board.locator(f'#wallboard-live tr[data-agent="{alice.pk}"] .handling-list li[data-conversation="{conversation.pk}"]')
           ).to_be_visible()
    expect(support.locator('[data-field="waiting"]')).to_have_text("0")
    screenshot(board, "wallboard-02-assigned")

    assigned = Message.objects.get(conversation=conversation, event_type=EventType.ASSIGNED)
    assert assigned.author_agent_id == carol.pk and assigned.event_data.get("note") == "Please take this one."

    # A change to a row under the keyboard's focus keeps the focus on the same control in the new row.
    manage = f'#wallboard-live tr[data-agent="{alice.pk}"] button[data-manage="{conversation.pk}"]'
    board.locator(manage).focus()
    since = board.locator(f'#wallboard-live tr[data-agent="{alice.pk}"] .ticker').first.get_attribute("data-since")
    board.evaluate("""async ([url, presence]) => {
        const token = document.querySelector("#presence-dialog input[name=csrfmiddlewaretoken]").value;
        const body = new FormData(); body.append("presence", presence);
        await fetch(url, {method: "POST", body, credentials: "same-origin",
                          headers: {"X-CSRFToken": token, "Accept": "application/json"}});
    }""", [f"/supervisor/agents/{alice.pk}/presence/", str(states.available.pk)])  # the focus stays put
    expect(board.locator(f'#wallboard-live tr[data-agent="{alice.pk}"] .ticker').first).not_to_have_attribute(
        "data-since", since)
    assert board.evaluate("() => document.activeElement.getAttribute('data-manage')") == str(conversation.pk)

    # Carol puts Alice offline from the board: her row changes in place (a delta swaps the row, the
    # board around it stays), and the change is recorded with Carol as its author.
    board.evaluate("() => { document.querySelector('#wallboard-live .wallboard').__kept = 1; }")
    alice_row = board.locator(f'#wallboard-live tr[data-agent="{alice.pk}"]')
    alice_row.locator("button[data-presence-agent]").click()
    presence_dialog = board.locator("#presence-dialog")
    expect(presence_dialog).to_be_visible()
    presence_dialog.locator("#presence-state").select_option(str(states.offline.pk))
    presence_dialog.locator("button[type=submit]").click()
    expect(presence_dialog).to_be_hidden()
    expect(alice_row.locator(".presence-chip")).to_have_text("Offline")
    assert board.evaluate("() => document.querySelector('#wallboard-live .wallboard').__kept") == 1
    change = AgentPresenceChange.objects.filter(agent=alice).latest("changed_at")
    assert (change.source, change.changed_by_id) == ("supervisor", carol.pk)
    assert board.evaluate("() => window.__marker") == 1  # never reloaded
    assert csp_violations(board) == []
    assert csp_violations(alice_page) == []


@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_the_wallboard_is_accessible(new_context, browser_server, locale):
    states = presences()
    desk = support_desk()
    console_agent("alice", display_name="Alice Tanaka", presence=states.available, skills=[desk.skill])
    console_agent("carol", display_name="Carol Sato", presence=states.offline, skills=[], role="supervisor")
    text_in(browser_server.base_url, sender="+819033334444", to=desk.sms.address, body="hello")
    page = new_context(locale=locale, bypass_csp=True).new_page()
    login(page, "carol", PASSWORD)
    if locale.startswith("ja"):
        page.locator(".lang-switch button[value=ja]").click()
    page.goto("/supervisor/")
    expect(page.locator("#wallboard-state")).to_have_attribute("data-state", "live")
    expect(page.locator("html")).to_have_attribute("lang", locale[:2])
    assert_accessible(page, f"wallboard ({locale})")
    page.locator("button[data-presence-agent]").first.click()
    expect(page.locator("#presence-dialog")).to_be_visible()
    assert_accessible(page, f"wallboard presence dialog ({locale})")
