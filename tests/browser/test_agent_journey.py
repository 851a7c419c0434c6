"""One agent, one customer, every step in a real browser: go available, take the offer, read what
the customer told us before on other channels, reply to the simulated phone, resolve."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import (
    Agent,
    Channel,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    EventType,
    Message,
    MessageKind,
    WrapUpCode,
)
from profiles.models import IdentityKind

from ..conftest import wait_for
from ..factories import PASSWORD, make_conversation, make_customer, make_identity, make_inbox, make_message
from .conftest import login, publish_screenshot, screenshot
from .seeding import console_agent, presences, support_desk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = "090-1234-5678"
EMAIL_SUBJECT = "Cracked teapot lid, order SO-1001"
EMAIL_TEXT = "The lid of my kyusu teapot (order SO-1001) arrived cracked. 急須の蓋が割れていました。"
CHAT_TEXT = "Do you ship sencha gift boxes to Osaka by Friday? 金曜日までに届きますか。"
SMS_TEXT = "Hanako again: the replacement lid has not arrived yet. 交換の蓋がまだ届きません。"
REPLY_TEXT = "Sorry for the wait, Hanako. The replacement lid ships today by express, tracking JP-4821."


def _seed():
    states = presences()
    desk = support_desk()
    for order, (code, label) in enumerate([("replacement-sent", "Replacement sent"),
                                           ("delivery-info", "Delivery information given"),
                                           ("refund", "Refund issued")]):
        WrapUpCode.objects.create(code=code, label=label, ordering=order)
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[desk.skill])

    customer = make_customer("山田 花子", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819012345678", verified=True)
    make_identity(customer, IdentityKind.EMAIL, "hanako.yamada@example.jp", verified=True)
    now = timezone.now()

    # Twelve days ago, by email: resolved by Alice with a replacement.
    at = now - timedelta(days=12)
    email = make_conversation(customer, make_inbox(Channel.EMAIL), subject=EMAIL_SUBJECT, queue=desk.queue,
                              assignee=alice, status=ConversationStatus.RESOLVED, created_at=at, assigned_at=at,
                              last_message_at=at + timedelta(hours=1), resolved_at=at + timedelta(hours=2))
    make_message(email, EMAIL_TEXT, created_at=at)
    make_message(email, "We are sending a replacement lid today.", direction=Direction.OUTBOUND, author_agent=alice,
                 delivery_status=DeliveryStatus.DELIVERED, created_at=at + timedelta(hours=1))
    make_message(email, "", kind=MessageKind.EVENT, direction=Direction.INTERNAL, event_type=EventType.RESOLVED,
                 event_data={"wrap_up_code": "replacement-sent"}, author_agent=alice, created_at=at + timedelta(hours=2))

    # Three days ago, by web chat: answered and resolved.
    at = now - timedelta(days=3)
    chat = make_conversation(customer, make_inbox(Channel.WEBCHAT), queue=desk.queue, assignee=alice,
                             status=ConversationStatus.RESOLVED, created_at=at, assigned_at=at,
                             last_message_at=at + timedelta(minutes=5), resolved_at=at + timedelta(minutes=10))
    make_message(chat, CHAT_TEXT, created_at=at)
    make_message(chat, "Yes: order by Wednesday noon and it arrives on Friday.", direction=Direction.OUTBOUND,
                 author_agent=alice, delivery_status=DeliveryStatus.DELIVERED, created_at=at + timedelta(minutes=5))
    make_message(chat, "", kind=MessageKind.EVENT, direction=Direction.INTERNAL, event_type=EventType.RESOLVED,
                 event_data={"wrap_up_code": "delivery-info"}, author_agent=alice, created_at=at + timedelta(minutes=10))
    return alice, desk, customer


def test_agent_takes_an_sms_with_earlier_email_and_chat_replies_and_resolves(new_context, browser_server):
    alice, desk, customer = _seed()
    context = new_context()
    console = context.new_page()
    login(console, "alice", PASSWORD)

    # Go available (the presence select submits itself) before the customer writes.
    console.locator("#presence-select").select_option(label="Available")
    wait_for(lambda: Agent.objects.select_related("presence").get(pk=alice.pk).presence.is_available)

    # The customer texts our SMS number from the simulated phone.
    phone = context.new_page()
    phone.set_viewport_size({"width": 480, "height": 860})
    phone.goto("/simulator/phone/")
    phone.locator("#phone-from").fill(PHONE)
    phone.locator("#phone-to").select_option(desk.sms.address)
    phone.locator("#phone-body").fill(SMS_TEXT)
    phone.locator("#phone-compose button[type=submit]").click()
    expect(phone.locator("#phone-status")).to_contain_text("✓")

    # The offer reaches Alice live; she accepts it.
    offer = console.locator("#offers .offer").filter(has_text="山田 花子")
    expect(offer).to_be_visible()
    screenshot(console, "journey-01-offer")
    offer.locator("form[data-action=accept] button").click()

    sms = wait_for(lambda: Message.objects.filter(channel=Channel.SMS, text=SMS_TEXT).first())
    conversation = sms.conversation
    expect(console.locator(f"#conversation-pane[data-conversation='{conversation.pk}']")).to_be_visible()
    assert conversation.customer_id == customer.pk  # the phone identity found her

    # One timeline: the earlier email and chat, then today's text.
    timeline = console.locator("#timeline-entries")
    expect(timeline).to_contain_text(EMAIL_TEXT)
    expect(timeline).to_contain_text(CHAT_TEXT)
    expect(timeline.locator(".entry.in-current").filter(has_text=SMS_TEXT)).to_have_count(1)
    # "What they already told us": both earlier contacts, resolved, with how they ended.
    context_card = console.locator(".card-context")
    expect(context_card).to_contain_text("What they already told us")
    expect(context_card).to_contain_text(EMAIL_SUBJECT)
    expect(context_card).to_contain_text("Do you ship sencha gift boxes to Osaka by Friday?")
    expect(context_card.locator(".reason").filter(has_text=EMAIL_SUBJECT)).to_contain_text("Replacement sent")
    expect(context_card.locator(".reason").filter(has_text="sencha")).to_contain_text("Resolved")
    screenshot(console, "journey-02-accepted")

    # Reply with Ctrl+Enter; it goes out by SMS and the phone receives it.
    console.locator("#composer-text").fill(REPLY_TEXT)
    console.locator("#composer-text").press("Control+Enter")
    outbound = timeline.locator(".entry.is-outbound.in-current").filter(has_text=REPLY_TEXT)
    expect(outbound).to_have_count(1)
    expect(console.locator("#composer-text")).to_have_value("")
    expect(phone.locator("#phone-thread li.in").filter(has_text=REPLY_TEXT)).to_have_count(1)
    screenshot(phone, "journey-03-phone-received-reply")
    # The simulator plays Twilio's delivery callbacks: the console shows "Delivered" by itself.
    expect(outbound.locator(".delivery")).to_contain_text("Delivered")
    console.locator("#timeline-scroll").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    publish_screenshot(screenshot(console, "journey-04-replied"), "console.png")

    # Resolve from the keyboard: Esc leaves the composer, E opens the dialog.
    console.locator("#composer-text").press("Escape")
    console.keyboard.press("e")
    dialog = console.locator("#resolve-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#wrap-up-code").select_option("delivery-info")
    dialog.locator("#wrap-up-note").fill("Replacement lid re-sent by express.")
    screenshot(console, "journey-05-resolve-dialog")
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()

    expect(console.locator(".conversation-head [data-status]")).to_have_text("Resolved")
    resolved_event = timeline.locator(".entry-event.in-current").filter(has_text="Resolved")
    expect(resolved_event).to_have_count(1)
    expect(resolved_event).to_contain_text("Delivery information given")
    screenshot(console, "journey-06-resolved")

    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.RESOLVED and conversation.assignee_id == alice.pk
    assert conversation.messages.get(event_type=EventType.RESOLVED).event_data["wrap_up_code"] == "delivery-info"
