"""The SMTP listener over real SMTP: aiosmtpd on a free port, smtplib as the sending server."""

import smtplib
import socket
from pathlib import Path

import pytest
from django.test import override_settings

from conversations.management.commands.smtpd import make_controller
from conversations.models import Channel, Message, RawEmail
from tests.factories import make_inbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"
pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server(db):
    make_inbox(Channel.EMAIL)
    controller = make_controller(hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


def smtp(controller) -> smtplib.SMTP:
    return smtplib.SMTP(controller.hostname, controller.port, timeout=10)


def test_mail_over_smtp_is_ingested_byte_for_byte(smtp_server):
    raw = (FIXTURES / "iso2022jp_nec.eml").read_bytes()
    with smtp(smtp_server) as client:
        refused = client.sendmail("hanako@example.jp", ["support@shop.example.jp"], raw)
    assert refused == {}
    message = Message.objects.get()
    assert "①注文番号 Ⅰ-123 の件です。" in message.text
    raw_email = RawEmail.objects.get(message=message)
    assert bytes(raw_email.raw) == raw
    assert raw_email.source == "smtp" and raw_email.envelope_from == "hanako@example.jp"
    assert raw_email.envelope_to == ["support@shop.example.jp"]


def test_retry_of_the_same_mail_is_one_message(smtp_server):
    raw = (FIXTURES / "euc_jp.eml").read_bytes()
    for _ in range(2):
        with smtp(smtp_server) as client:
            client.sendmail("saburo@example.jp", ["support@shop.example.jp"], raw)
    assert Message.objects.count() == 1


def test_unknown_recipient_is_550_known_one_still_delivered(smtp_server):
    raw = (FIXTURES / "euc_jp.eml").read_bytes()
    with smtp(smtp_server) as client:
        refused = client.sendmail("saburo@example.jp", ["nobody@shop.example.jp", "support@shop.example.jp"], raw)
    assert refused["nobody@shop.example.jp"][0] == 550
    assert Message.objects.count() == 1
    with smtp(smtp_server) as client, pytest.raises(smtplib.SMTPRecipientsRefused):
        client.sendmail("saburo@example.jp", ["nobody@shop.example.jp"], raw)


def test_oversized_mail_is_552_and_nothing_stored(db):
    make_inbox(Channel.EMAIL)
    with override_settings(CC_MAX_EMAIL_BYTES=2000):
        controller = make_controller(hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        raw = (FIXTURES / "euc_jp.eml").read_bytes() + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 100
        client = smtp(controller)
        with pytest.raises(smtplib.SMTPException) as excinfo:
            client.sendmail("saburo@example.jp", ["support@shop.example.jp"], raw)
        code = getattr(excinfo.value, "smtp_code", None) or excinfo.value.args[0]
        assert code == 552
        client.close()
    finally:
        controller.stop()
    assert not Message.objects.exists()


def test_bounce_with_empty_envelope_sender_is_stored_as_automated(smtp_server):
    raw = (FIXTURES / "bounce.eml").read_bytes()
    with smtp(smtp_server) as client:
        client.sendmail("", ["support@shop.example.jp"], raw)
    message = Message.objects.get()
    assert "empty envelope sender" in message.metadata["automated"]
    assert message.conversation.status == "resolved"


def test_a_recipient_lookup_that_fails_is_451_so_the_sender_retries(smtp_server, monkeypatch):
    """PostgreSQL down during RCPT: aiosmtpd's own answer to an exception is a permanent 500, and
    the sending server would bounce the mail; 451 makes it keep the mail and retry."""
    from django.db import OperationalError

    from conversations.channels.email import ingest as email

    def unreachable(address, **kwargs):
        raise OperationalError("database unavailable")

    monkeypatch.setattr(email, "inbox_for_address", unreachable)
    raw = (FIXTURES / "euc_jp.eml").read_bytes()
    with smtp(smtp_server) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail("saburo@example.jp", ["support@shop.example.jp"], raw)
    assert refused.value.recipients["support@shop.example.jp"][0] == 451
    assert Message.objects.count() == 0
