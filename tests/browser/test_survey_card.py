"""The widget's rating card after a chat is resolved (issue 19): it arrives by itself (the server's
tick sends the due survey over the widget's socket), is answered by keyboard alone, is thanked in
place, and axe-core finds nothing serious in it."""

from datetime import time

import pytest
from playwright.sync_api import expect

from conversations.models import Channel, Conversation
from conversations.routing.assignment import conversation_resolve
from conversations.services.outbound import message_send
from surveys.models import SurveyDefinition, SurveyKind, SurveyPolicy, SurveyRequest, SurveyStatus

from .axe import assert_accessible
from .conftest import off_the_browser_thread, screenshot
from .test_widget_customer import LAUNCHER, PANEL, accepted, chat_desk, shop_page, start_chat

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_rating_card_is_answered_by_keyboard_and_passes_axe(new_context, browser_server):
    _widget, agent = chat_desk()
    SurveyPolicy.objects.create(quiet_start=time(0, 0), quiet_end=time(0, 1))
    SurveyDefinition.objects.create(name="Chat CSAT", kind=SurveyKind.CSAT, delay_seconds=0,
                                    question_en="How satisfied were you with this chat?", follow_up_en="Why?")
    page = shop_page(new_context, bypass_csp=True)
    start_chat(page, "Do you ship to Osaka?")
    expect(accepted(page)).to_have_count(1)
    conversation = Conversation.objects.get(channel=Channel.WEBCHAT)
    # The agent's reply as the console sends it: the conversation locked first, as the server's
    # own writers do (a bare insert beside them can deadlock on PostgreSQL).
    off_the_browser_thread(message_send, conversation=conversation, agent=agent, text="Yes, next day.")
    off_the_browser_thread(conversation_resolve, conversation_id=conversation.pk, by=agent)
    assert SurveyRequest.objects.get(conversation=conversation).status == SurveyStatus.SCHEDULED

    card = page.locator(".cc-survey")
    expect(card.locator("legend")).to_have_text("How satisfied were you with this chat?", timeout=30_000)
    expect(page.locator(PANEL)).to_be_visible()
    assert_accessible(page, "widget-survey-card")
    screenshot(page, "widget-survey-card")

    # The scale's meaning is part of the group's description for a screen reader.
    hint = card.locator("fieldset").get_attribute("aria-describedby")
    expect(card.locator(f"#{hint}")).to_have_text("1 = Very dissatisfied, 5 = Very satisfied")
    # Keyboard only: focus the first score, arrow to 4, Tab to the comment, type, Tab to the button, Enter.
    card.locator("input[type=radio]").first.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(card.locator("input[value='4']")).to_be_checked()
    page.keyboard.press("Tab")
    page.keyboard.type("Quick answer")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(card.locator(".cc-survey-thanks")).to_have_text("Thank you for your answer.", timeout=10_000)
    # The keyboard's focus is not dropped to the page behind when the form goes away.
    expect(card.locator(".cc-survey-thanks")).to_be_focused()
    response = SurveyRequest.objects.get(conversation=conversation).response
    assert (response.score, response.comment, response.via) == (4, "Quick answer", "widget")
    assert_accessible(page, "widget-survey-thanks")
    assert page.locator(LAUNCHER).count() == 1
