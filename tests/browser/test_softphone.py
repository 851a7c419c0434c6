"""The console's softphone without Twilio credentials: a voice offer rings in the console with the
caller's conversation open (screen pop) and their IVR choices, the agent answers, holds, resumes
and hangs up, and every step is on the timeline, live; each control was a Twilio REST request,
recorded locally."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import (
    Call,
    Channel,
    EventType,
    Message,
    Queue,
    RecordedProviderRequest,
    Skill,
)
from profiles.models import IdentityKind

from ..conftest import wait_for
from ..factories import (
    PASSWORD,
    make_conversation,
    make_customer,
    make_identity,
    make_inbox,
)
from .axe import assert_accessible
from .conftest import login, screenshot
from .seeding import console_agent, presences

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CALL_SID = "CA" + "7" * 32


def waiting_call(conversation, *, ivr=None):
    """What the voice webhooks store for a caller on hold (the Call row, its IVR choices)."""
    return Call.objects.create(conversation=conversation, call_sid=CALL_SID, from_address="+819087654321",
                               to_address=conversation.inbox.address, status="in-progress", language="ja",
                               queued_at=timezone.now(), ivr=ivr or {})


def entry_for(page, conversation, event_type):
    message = wait_for(lambda: Message.objects.filter(conversation=conversation, event_type=event_type).last())
    return page.locator(f'#timeline-entries > li[data-key="m-{message.pk}"]')


def test_a_simulated_call_rings_is_answered_held_resumed_and_hung_up(new_context, browser_server):
    states = presences()
    skill = Skill.objects.create(name="Phone", slug="phone")
    queue = Queue.objects.create(name="Phone", slug="phone", channels=[Channel.VOICE], allow_pick=False)
    queue.required_skills.set([skill])
    inbox = make_inbox(Channel.VOICE, "+815031230003", name="Voice", default_queue=queue)
    alice = console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[skill])
    customer = make_customer("佐藤 健", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819087654321", verified=True)
    conversation = make_conversation(customer, inbox, queue=queue, queued_at=timezone.now())
    # What the server side of voice stores when the call comes in (CallSid, the IVR choices).
    inbox.settings = {"ivr": {"options": [{"key": "1", "name": "orders", "label": {"ja": "ご注文", "en": "Orders"}}]}}
    inbox.save()
    waiting_call(conversation, ivr={"option": "orders", "key": "1", "how": "keypad", "digits": "1"})

    page = new_context(bypass_csp=True).new_page()  # axe is injected inline
    login(page, "alice", PASSWORD)
    softphone = page.locator("#softphone")
    expect(softphone).to_be_visible()
    expect(softphone).to_contain_text("Simulated: no audio")
    page.locator("#presence-select").select_option(label="Available")

    # It rings, with the caller's conversation opened beside it and what they chose in the menu.
    status = page.locator("#softphone-status")
    expect(status).to_have_text("Incoming call: 佐藤 健")
    expect(softphone.locator("[data-softphone-ivr]")).to_contain_text("Menu: Orders (keypad)")
    expect(softphone.locator("[data-softphone-ivr]")).to_contain_text("Skills: Phone")
    expect(page.locator(f"#conversation-pane[data-conversation='{conversation.pk}']")).to_be_visible()
    assert_accessible(page, "softphone ringing", selector="#softphone")
    screenshot(page, "softphone-01-ringing")

    softphone.locator("[data-call=answer]").click()
    expect(status).to_have_text("On a call with 佐藤 健")
    expect(entry_for(page, conversation, EventType.CALL_CONNECTED)).to_contain_text("Call answered")
    expect(softphone.locator("[data-softphone-timer]")).to_be_visible()

    softphone.locator("[data-call=mute]").click()
    expect(softphone.locator("[data-call=mute]")).to_have_attribute("aria-pressed", "true")
    softphone.locator("[data-call=keypad]").click()
    softphone.locator("[data-digit='5']").click()
    expect(softphone.locator("[data-softphone-digits]")).to_have_text("5")

    softphone.locator("[data-call=hold]").click()
    expect(status).to_have_text("佐藤 健 is on hold")
    expect(entry_for(page, conversation, EventType.CALL_HELD)).to_contain_text("Call on hold")
    assert_accessible(page, "softphone on hold", selector="#softphone")
    screenshot(page, "softphone-02-on-hold")

    softphone.locator("[data-call=resume]").click()
    expect(status).to_have_text("On a call with 佐藤 健")
    expect(entry_for(page, conversation, EventType.CALL_RESUMED)).to_contain_text("Call resumed")

    softphone.locator("[data-call=hangup]").click()
    expect(status).to_contain_text("Call ended")
    expect(entry_for(page, conversation, EventType.CALL_ENDED)).to_contain_text("Call ended")
    expect(softphone.locator("[data-call=wrapup]")).to_be_visible()
    screenshot(page, "softphone-03-wrap-up")

    # Each control was asked of Twilio (recorded without credentials), in order.
    asked = [(row.method, row.uri.rsplit("/", 2)[-2:]) for row in
             RecordedProviderRequest.objects.filter(provider="twilio").order_by("created_at", "id")]
    assert asked[0] == ("POST", ["Calls", f"{CALL_SID}.json"])
    assert [m for m, _ in asked].count("DELETE") == 0
    holds = RecordedProviderRequest.objects.filter(uri__endswith="/Participants/customer.json").order_by("id")
    assert [row.params["Hold"] for row in holds] == ["true", "false"]
    assert RecordedProviderRequest.objects.filter(uri__endswith=f"/Calls/{CALL_SID}.json",
                                                  params__Status="completed").exists()
    assert alice.pk


def test_a_warm_transfer_consults_a_colleague_joins_everyone_and_hands_the_call_over(new_context, browser_server):
    states = presences()
    skill = Skill.objects.create(name="Phone", slug="phone")
    queue = Queue.objects.create(name="Phone", slug="phone", channels=[Channel.VOICE], allow_pick=False)
    queue.required_skills.set([skill])
    inbox = make_inbox(Channel.VOICE, "+815031230003", name="Voice", default_queue=queue)
    console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[skill])
    bob = console_agent("bob", display_name="Bob Sato", presence=states.offline, skills=[skill])
    customer = make_customer("佐藤 健", language="ja")
    make_identity(customer, IdentityKind.PHONE, "+819087654321", verified=True)
    conversation = make_conversation(customer, inbox, queue=queue, queued_at=timezone.now())
    waiting_call(conversation)

    bob_page = new_context().new_page()
    login(bob_page, "bob", PASSWORD)
    alice_page = new_context().new_page()
    login(alice_page, "alice", PASSWORD)
    alice_page.locator("#presence-select").select_option(label="Available")
    alice_phone, bob_phone = alice_page.locator("#softphone"), bob_page.locator("#softphone")
    expect(alice_page.locator("#softphone-status")).to_have_text("Incoming call: 佐藤 健")
    alice_phone.locator("[data-call=answer]").click()
    expect(alice_page.locator("#softphone-status")).to_have_text("On a call with 佐藤 健")

    # Consult Bob first: the caller holds; Bob is asked in.
    alice_phone.locator("[data-call=transfer]").click()
    alice_phone.locator("#softphone-target").select_option(f"agent:{bob.pk}")
    alice_phone.locator("#softphone-note").fill("Asks about order SO-88")
    alice_phone.locator("[data-call=consult]").click()
    expect(alice_page.locator("#softphone-status")).to_have_text("Consulting Bob Sato; 佐藤 健 is on hold")
    expect(bob_page.locator("#softphone-status")).to_have_text("Alice Tanaka asks you to join a call")
    expect(entry_for(alice_page, conversation, EventType.CALL_CONSULT)).to_contain_text("Consulting a colleague")

    alice_phone.locator("[data-call=join]").click()
    expect(alice_page.locator("#softphone-status")).to_have_text("佐藤 健, Bob Sato and you are on the call")
    screenshot(alice_page, "softphone-04-warm-conference")

    # Alice leaves: the call and the conversation are Bob's, with her note.
    alice_phone.locator("[data-call=leave]").click()
    expect(bob_page.locator("#softphone-status")).to_have_text("On a call with 佐藤 健")
    expect(bob_phone.locator("[data-call=hold]")).to_be_visible()
    expect(alice_page.locator("#softphone-status")).to_have_text("Ready for calls")
    transferred = wait_for(lambda: Message.objects.filter(conversation=conversation,
                                                          event_type=EventType.TRANSFERRED).last())
    assert transferred.event_data["note"] == "Asks about order SO-88" and transferred.event_data["to_agent"] == bob.pk
    assert [m.event_type for m in Message.objects.filter(conversation=conversation, kind="event").order_by("seq")
            if m.event_type.startswith("call_")] == ["call_connected", "call_consult", "call_joined", "call_left"]
    bob_phone.locator("[data-call=hold]").click()
    expect(bob_page.locator("#softphone-status")).to_have_text("佐藤 健 is on hold")
    screenshot(bob_page, "softphone-05-bob-has-the-call")


def test_the_conversations_own_transfer_moves_the_call_the_agent_is_on(new_context, browser_server):
    states = presences()
    skill = Skill.objects.create(name="Phone", slug="phone")
    queue = Queue.objects.create(name="Phone", slug="phone", channels=[Channel.VOICE], allow_pick=False)
    queue.required_skills.set([skill])
    billing = Queue.objects.create(name="Billing", slug="billing", channels=[Channel.VOICE])
    inbox = make_inbox(Channel.VOICE, "+815031230003", name="Voice", default_queue=queue)
    console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[skill])
    customer = make_customer("佐藤 健", language="ja")
    conversation = make_conversation(customer, inbox, queue=queue, queued_at=timezone.now())
    waiting_call(conversation)

    page = new_context().new_page()
    login(page, "alice", PASSWORD)
    page.locator("#presence-select").select_option(label="Available")
    page.locator("#softphone [data-call=answer]").click()
    expect(page.locator("#softphone-status")).to_have_text("On a call with 佐藤 健")

    page.locator(".conversation-head button[data-open-dialog=transfer-dialog]").click()
    dialog = page.locator("#transfer-dialog")
    dialog.locator("#transfer-target").select_option(f"queue:{billing.pk}")
    dialog.locator("#transfer-note").fill("Invoice question")
    dialog.locator("button[type=submit]").click()
    # The call went with it: the caller holds in the conference, Alice's leg left.
    left = wait_for(lambda: Message.objects.filter(conversation=conversation, event_type=EventType.CALL_LEFT).last())
    assert left.event_data["reason"] == "transfer"
    assert RecordedProviderRequest.objects.filter(method="DELETE", uri__contains="/Participants/agent_").exists()
    conversation.refresh_from_db()
    assert conversation.queue_id == billing.pk and conversation.assignee_id is None
