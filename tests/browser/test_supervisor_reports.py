"""The supervisor reports in a browser: the page with its figures, definitions, charts and the
agent status timeline passes axe in English and Japanese, and its drill-down links lead to the
conversations behind a figure."""

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation
from supervisor.facts.services import facts_rebuild

from ..conftest import wait_for
from ..factories import PASSWORD
from .axe import assert_accessible
from .conftest import login, screenshot
from .seeding import console_agent, presences, support_desk, text_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_the_reports_are_accessible_and_drill_down(new_context, browser_server, locale):
    from conversations.routing.presence import agent_presence_set

    states = presences()
    desk = support_desk()
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[desk.skill])
    carol = console_agent("carol", display_name="Carol Sato", presence=states.offline, skills=[], role="supervisor")
    agent_presence_set(agent=alice, presence=states.available, reason="supervisor", by=carol)
    text_in(browser_server.base_url, sender="+819055556666", to=desk.sms.address, body="Is my parcel on its way?")
    wait_for(lambda: Conversation.objects.filter(inbox=desk.sms).exists())
    facts_rebuild()

    page = new_context(locale=locale, bypass_csp=True).new_page()
    login(page, "carol", PASSWORD)
    if locale.startswith("ja"):
        page.locator(".lang-switch button[value=ja]").click()
    page.goto(f"/supervisor/reports/?agent={alice.pk}")
    expect(page.locator("html")).to_have_attribute("lang", locale[:2])
    expect(page.locator("#metric-csat")).to_be_visible()
    expect(page.locator("#chart-csat-day")).to_be_attached()
    assert_accessible(page, f"reports ({locale})")
    screenshot(page, f"reports-{locale}", full_page=True)

    page.goto("/supervisor/reports/")
    page.locator("#metric-offered a").first.click()
    expect(page.locator("#drill-down tbody tr")).to_have_count(1)  # the one conversation offered
    assert "metric=offered" in page.url
    assert_accessible(page, f"reports drill-down ({locale})")
