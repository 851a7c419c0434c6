"""The demo's email inbox has a webhook secret the README names, and a refused POST says how to get in."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from conversations.demo.seed import ensure_configuration
from conversations.models import Channel, Inbox, Message
from tests.factories import make_inbox

pytestmark = pytest.mark.django_db
README = Path(__file__).resolve().parents[2] / "README.md"
MAIL = (b"From: Hanako <hanako@example.jp>\r\nTo: support@sakura-tea.example\r\nSubject: Order\r\n"
        b"Message-ID: <demo-hook-1@example.jp>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nWhere is it?\r\n")


def post(client, secret: str | None):
    headers = {"HTTP_X_CC_EMAIL_SECRET": secret} if secret is not None else {}
    return client.post("/webhooks/email/", data=MAIL, content_type="message/rfc822", **headers)


@override_settings(CC_EMAIL_WEBHOOK_SECRET="")
def test_the_demo_email_inbox_accepts_the_secret_the_readme_names(client):
    ensure_configuration("pw")
    assert settings.CC_DEMO_EMAIL_SECRET in README.read_text()
    response = post(client, settings.CC_DEMO_EMAIL_SECRET)
    assert response.status_code == 202
    message = Message.objects.get(pk=response.json()["message"])
    assert message.inbox.address == "support@sakura-tea.example" and message.text == "Where is it?"


def test_seeding_again_gives_a_demo_inbox_without_secret_one_and_keeps_one_set_by_hand():
    make_inbox(Channel.EMAIL, address="support@sakura-tea.example")
    ensure_configuration("pw")
    inbox = Inbox.objects.get(kind=Channel.EMAIL)
    assert inbox.secret == settings.CC_DEMO_EMAIL_SECRET
    Inbox.objects.filter(pk=inbox.pk).update(secret="chosen-by-the-admin")
    ensure_configuration("pw")
    assert Inbox.objects.get(pk=inbox.pk).secret == "chosen-by-the-admin"


def test_seed_demo_prints_how_to_post_to_the_email_webhook(capsys, monkeypatch):
    monkeypatch.setattr("conversations.management.commands.seed_demo.seed_demo",
                        lambda password: type("R", (), {"customers_created": 0, "customers_existing": 0, "counts": {
                            "inboxes": 0, "queues": 0, "agents": 0, "customers": 0, "conversations": 0, "messages": 0,
                            "touchpoints": 0, "pending_merge_suggestions": 0, "conversations_by_channel": {},
                            "conversations_by_status": {}}})())
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert f"X-CC-Email-Secret: {settings.CC_DEMO_EMAIL_SECRET}" in out and "/webhooks/email/" in out


@override_settings(CC_EMAIL_WEBHOOK_SECRET="")
def test_refusal_without_any_secret_configured_says_how_to_set_one(client):
    make_inbox(Channel.EMAIL)
    response = post(client, None)
    assert response.status_code == 403
    error = response.json()["error"]
    assert "No email webhook secret is configured" in error
    assert "X-CC-Email-Secret" in error and "CC_EMAIL_WEBHOOK_SECRET" in error and "/admin/" in error
    assert not Message.objects.exists()


@override_settings(CC_EMAIL_WEBHOOK_SECRET="the-real-one")
def test_refusal_of_a_wrong_secret_names_the_header_and_where_it_is_set(client):
    make_inbox(Channel.EMAIL)
    response = post(client, "guess")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error.startswith("Missing or wrong X-CC-Email-Secret header")
    assert "CC_EMAIL_WEBHOOK_SECRET" in error and "the-real-one" not in error
    assert not Message.objects.exists()
