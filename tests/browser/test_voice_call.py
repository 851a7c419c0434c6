"""A phone call end to end, with Twilio's side played by signed webhooks to the running server and
every REST request it makes read back from the recording HTTP client: the caller is queued on
``<Enqueue>``, the offer rings in Alice's console with the screen pop (the caller and their IVR
choices), she answers (the caller is redirected into the conversation's conference and her
browser added to it), consults Bob (warm transfer), joins everyone and leaves: Bob has the call,
and the timeline shows each step."""

import xml.etree.ElementTree as ET

import pytest
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
from conversations.simulator import client as simulator_client
from profiles.models import IdentityKind

from ..conftest import wait_for
from ..factories import PASSWORD, make_customer, make_identity, make_inbox
from .axe import assert_accessible
from .conftest import login, screenshot
from .seeding import console_agent, presences

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VOICE_NUMBER = "+815031230003"
CALLER = "+819087654321"
CALL_SID = "CA" + "5" * 32


def twilio_posts(base_url: str, path: str, **extra) -> ET.Element | None:
    """What Twilio posts for the caller's call, signed; the TwiML answer parsed (None for 204)."""
    params = {"CallSid": CALL_SID, "AccountSid": "AC" + "d" * 32, "From": CALLER, "To": VOICE_NUMBER,
              "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}
    response = simulator_client.post_signed(base_url, path, params)
    assert response.status_code in (200, 204), response.text
    return ET.fromstring(response.content) if response.status_code == 200 else None


def relative(url: str) -> str:
    """The path (and query) of a URL we gave Twilio, as Twilio would request it on our server."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def rest_requests_since(first_id: int) -> list[tuple[str, str, dict]]:
    rows = RecordedProviderRequest.objects.filter(provider="twilio", pk__gt=first_id).order_by("id")
    return [(row.method, row.uri.split("/Accounts/", 1)[1].split("/", 1)[1], row.params) for row in rows]


def test_a_call_rings_is_answered_in_the_conference_and_transferred_warm(new_context, browser_server):
    base = browser_server.base_url
    states = presences()
    skill = Skill.objects.create(name="Phone", slug="phone")
    queue = Queue.objects.create(name="Phone", slug="phone", channels=[Channel.VOICE], allow_pick=False)
    queue.required_skills.set([skill])
    make_inbox(Channel.VOICE, VOICE_NUMBER, name="Voice", default_queue=queue)
    console_agent("alice", display_name="Alice Tanaka", presence=states.offline, skills=[skill])
    bob = console_agent("bob", display_name="Bob Sato", presence=states.offline, skills=[skill])
    customer = make_customer("佐藤 健", language="ja")
    make_identity(customer, IdentityKind.PHONE, CALLER, verified=True)

    bob_page = new_context(bypass_csp=True).new_page()
    login(bob_page, "bob", PASSWORD)
    alice_page = new_context(bypass_csp=True).new_page()  # axe is injected inline
    login(alice_page, "alice", PASSWORD)
    alice_phone, bob_phone = alice_page.locator("#softphone"), bob_page.locator("#softphone")
    status, bob_status = alice_page.locator("#softphone-status"), bob_page.locator("#softphone-status")
    expect(alice_phone).to_be_visible()

    # The call comes in (a line without a menu goes straight to its queue) and waits on <Enqueue>.
    answer = twilio_posts(base, "/webhooks/twilio/voice/", CallStatus="ringing")
    enqueue = answer.find("Enqueue")
    assert enqueue.text == "phone" and enqueue.get("waitUrl") == "/webhooks/twilio/voice/wait/"
    call = Call.objects.get(call_sid=CALL_SID)
    hold = twilio_posts(base, "/webhooks/twilio/voice/wait/", QueuePosition="1")
    assert hold.find("Gather/Say").text == "現在1番目にお待ちいただいております。"
    before = RecordedProviderRequest.objects.order_by("-id").values_list("id", flat=True).first() or 0

    # Alice becomes available: the offer rings, the caller and their IVR choices pop up.
    alice_page.locator("#presence-select").select_option(label="Available")
    expect(status).to_have_text("Incoming call: 佐藤 健")
    ivr = alice_phone.locator("[data-softphone-ivr]")
    expect(ivr).to_contain_text("Language: 日本語")
    expect(ivr).to_contain_text("Queue: Phone")
    expect(ivr).to_contain_text("Skills: Phone")
    expect(alice_page.locator(f"#conversation-pane[data-conversation='{call.conversation_id}']")).to_be_visible()
    assert_accessible(alice_page, "voice call ringing", selector="#softphone")
    screenshot(alice_page, "voice-01-ringing")
    assert rest_requests_since(before) == []  # nothing moves before she answers

    alice_phone.locator("[data-call=answer]").click()
    expect(status).to_have_text("On a call with 佐藤 健")
    conference = f"conversation-{call.conversation_id}"
    (redirect, participant) = wait_for(lambda: rest_requests_since(before)[:2] if len(rest_requests_since(before)) >= 2
                                       else None)
    assert redirect[:2] == ("POST", f"Calls/{CALL_SID}.json")
    assert participant[:2] == ("POST", f"Conferences/{conference}/Participants.json")
    alice_id = call.conversation.offers.get().agent_id
    assert participant[2]["To"] == f"client:agent_{alice_id}"
    # Twilio follows the redirect out of the queue: the caller joins the same conference.
    joined = twilio_posts(base, relative(redirect[2]["Url"]))
    assert joined.find("Dial/Conference").text == conference
    assert joined.find("Dial/Conference").get("participantLabel") == "customer"
    twilio_posts(base, relative(participant[2]["StatusCallback"]), CallSid="CA" + "a" * 32, CallStatus="in-progress")

    # Warm transfer: consult Bob (the caller holds), join everyone, leave.
    mark = RecordedProviderRequest.objects.order_by("-id").values_list("id", flat=True).first()
    alice_phone.locator("[data-call=transfer]").click()
    alice_phone.locator("#softphone-target").select_option(f"agent:{bob.pk}")
    alice_phone.locator("#softphone-note").fill("Wants to change the delivery date")
    alice_phone.locator("[data-call=consult]").click()
    expect(status).to_have_text("Consulting Bob Sato; 佐藤 健 is on hold")
    expect(bob_status).to_have_text("Alice Tanaka asks you to join a call")
    alice_phone.locator("[data-call=join]").click()
    expect(status).to_have_text("佐藤 健, Bob Sato and you are on the call")
    screenshot(alice_page, "voice-02-warm-conference")
    alice_phone.locator("[data-call=leave]").click()
    expect(bob_status).to_have_text("On a call with 佐藤 健")
    expect(status).to_have_text("Ready for calls")
    expect(bob_phone.locator("[data-call=hold]")).to_be_visible()
    assert_accessible(bob_page, "voice call transferred", selector="#softphone")

    # Each step was a REST request on the conference that exists.
    asked = [(method, path.split("/Participants/")[-1] if "/Participants/" in path else path, params.get("Hold", ""))
             for method, path, params in rest_requests_since(mark)]
    assert asked[0] == ("GET", "Conferences.json", "")
    assert ("POST", "customer.json", "true") in asked and ("POST", "customer.json", "false") in asked
    assert ("POST", f"Conferences/{conference}/Participants.json", "") in asked
    assert asked[-1] == ("DELETE", f"agent_{alice_id}.json", "")
    bob_leg = next(params for method, path, params in rest_requests_since(mark) if path.endswith("Participants.json"))
    assert bob_leg["To"] == f"client:agent_{bob.pk}"

    # The timeline shows every step, and the conversation is Bob's.
    steps = wait_for(lambda: [m.event_type for m in Message.objects.filter(conversation_id=call.conversation_id,
                                                                            kind="event").order_by("seq")
                              if m.event_type.startswith("call_")] if Message.objects.filter(
        conversation_id=call.conversation_id, event_type=EventType.CALL_LEFT).exists() else None)
    assert steps == ["call_started", "call_queued", "call_connected", "call_consult", "call_joined", "call_left"]
    timeline = bob_page.locator("#timeline-entries")
    bob_page.goto(browser_server.url(f"/console/conversations/{call.conversation_id}/"))
    expect(timeline).to_contain_text("Call answered")
    expect(timeline).to_contain_text("Consulting a colleague")
    expect(timeline).to_contain_text("Wants to change the delivery date")
    screenshot(bob_page, "voice-03-bob-has-the-call")
