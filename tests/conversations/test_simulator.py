import pytest
from django.core.management import call_command
from django.test import override_settings

from conversations.models import Message, RecordedProviderRequest
from conversations.services.outbound import message_send
from conversations.tasks import deliver_message

from ..factories import make_inbox
from .twilio_helpers import process_inbound_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def simulator_on(settings):
    """The simulator is off by default in production mode; these tests are about it."""
    settings.CC_SIMULATOR = True


def test_phone_texts_through_a_signed_webhook_and_receives_the_reply(client, live_server, settings):
    settings.CC_PUBLIC_URL = live_server.url
    make_inbox("sms")
    response = client.post("/simulator/phone/send/", {"from": "０９０－１２３４－５６７８", "to": "+815012340000",
                                                      "body": "荷物が届きません"}, content_type="application/json")
    assert response.status_code == 200, response.content
    process_inbound_events()  # the worker's part: the webhook only stored the event
    message = Message.objects.get(direction="inbound")
    assert message.text == "荷物が届きません"
    assert message.provider_id == response.json()["sid"]
    assert message.customer.identities.get().value == "+819012345678"

    reply = message_send(conversation=message.conversation, agent=None, text="確認いたします")
    deliver_message.apply(args=[reply.pk])
    inbox = client.get("/simulator/phone/inbox/", {"number": "090-1234-5678"}).json()
    assert [m["body"] for m in inbox["messages"]] == ["確認いたします"]
    assert inbox["messages"][0]["from"] == "+815012340000"


def test_phone_page_renders_and_validates_input(client):
    make_inbox("sms")
    assert client.get("/simulator/").status_code == 200
    page = client.get("/simulator/phone/")
    assert page.status_code == 200 and b"+815012340000" in page.content
    bad = client.post("/simulator/phone/send/", {"from": "nope", "to": "+815012340000", "body": "x"},
                      content_type="application/json")
    assert bad.status_code == 400 and "phone" in bad.json()["error"]
    assert client.get("/simulator/phone/inbox/", {"number": "nope"}).status_code == 400


@override_settings(CC_SIMULATOR=False)
def test_simulator_is_404_when_off(client):
    assert client.get("/simulator/").status_code == 404
    assert client.get("/simulator/phone/").status_code == 404
    assert client.post("/simulator/phone/send/", {}, content_type="application/json").status_code == 404
    assert RecordedProviderRequest.objects.count() == 0


def test_simulate_command_sends_signed_sms(live_server, capsys):
    make_inbox("sms")
    call_command("simulate", "sms", "hello from the shell", "--from", "090-1111-2222", "--url", live_server.url)
    assert "sent sms" in capsys.readouterr().out
    process_inbound_events()
    assert Message.objects.get().text == "hello from the shell"


def test_simulated_delivery_posts_signed_status_callbacks(live_server, settings):
    from conversations.services import InboundMessage, message_receive
    from conversations.simulator.tasks import simulate_twilio_delivery

    settings.CC_SELF_URL = live_server.url
    conversation = message_receive(InboundMessage(inbox=make_inbox("sms"), sender_kind="phone",
                                                  sender_address="090-1234-5678", text="hi", provider_id="SMin")).conversation
    reply = message_send(conversation=conversation, agent=None, text="届きました")
    deliver_message.apply(args=[reply.pk])
    reply.refresh_from_db()
    simulate_twilio_delivery.apply(args=[reply.provider_id, "+819012345678", "+815012340000"])
    reply.refresh_from_db()
    assert reply.delivery_status == "delivered"
    assert sorted(reply.status_events.values_list("status", flat=True)) == ["delivered", "sent"]


def test_widget_demo_page_embeds_the_widget_with_one_script_tag(client):
    from conversations.channels.webchat.visitors import user_signature

    inbox = make_inbox("webchat", secret="s3cret")
    page = client.get("/simulator/widget/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<script") == 1 and 'data-widget="widget-main"' in html and "widget/widget.js" in html
    signed = client.get("/simulator/widget/", {"user": "shop-user-42"}).content.decode()
    assert f'data-user-signature="{user_signature(inbox, "shop-user-42")}"' in signed


SIGNS_ANYTHING = "Demo tool: it signs anything."
SIGNS_ANYTHING_JA = "デモ用ツール：どんな ID にも署名します。"


def test_widget_page_says_it_signs_any_user_id(client):
    """Issue 21's decision: the "sign any user id" page stays a demo tool, and says so."""
    make_inbox("webchat")
    page = client.get("/simulator/widget/", {"user": "somebody-else-7"})
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-user-id="somebody-else-7"' in body and "data-user-signature=" in body
    assert SIGNS_ANYTHING in body and "CC_SIMULATOR=1" in body
    assert "This demo signs any user id it is given." in client.get("/simulator/").content.decode()
    japanese = client.get("/simulator/widget/", {"user": "x"}, HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert SIGNS_ANYTHING_JA in japanese and "本番環境では CC_SIMULATOR=1" in japanese


@override_settings(CC_SIMULATOR=False)
def test_signing_page_is_404_when_off(client):
    make_inbox("webchat")
    response = client.get("/simulator/widget/", {"user": "shop-user-42"})
    assert response.status_code == 404
    assert b"data-user-signature" not in response.content


@pytest.mark.parametrize(("flag", "expected"), [(None, False), ("0", False), ("1", True)])
def test_production_has_the_simulator_only_with_cc_simulator_1(tmp_path, flag, expected):
    import os
    import subprocess
    import sys

    from ..conftest import REPO

    env = {name: value for name, value in os.environ.items() if not name.startswith("CC_")}
    env |= {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused", "REDIS_URL": "redis://127.0.0.1:6379/15",
            "SECRET_KEY": "test-secret", "CC_VAR_DIR": str(tmp_path)}
    if flag is not None:
        env["CC_SIMULATOR"] = flag
    script = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'contactcenter.settings'; django.setup(); "
              "from django.conf import settings; print(settings.CC_MODE, settings.CC_SIMULATOR)")
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["production", str(expected)]
