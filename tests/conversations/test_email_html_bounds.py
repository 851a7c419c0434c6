"""One email cannot occupy a worker: its HTML is measured (a linear scan) before it is sanitized, the
sanitizer runs under a time budget, and a mail past either bound is kept and flagged, shown as
text; over SMTP one slow mail never holds up another, and smtpd stops promptly on SIGTERM."""

import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from conversations.channels.email import sanitize
from conversations.management.commands import smtpd
from conversations.management.commands.smtpd import make_controller
from conversations.models import Channel, Conversation, Message, RawEmail
from conversations.channels.email.ingest import email_receive
from tests.conftest import _database_url_for_test_db, wait_for
from tests.factories import make_inbox

REPO = Path(__file__).resolve().parents[2]
DEPTH = 64_000


def nested_html(depth: int = DEPTH) -> str:
    return "<html><body>" + "<div>" * depth + "Where is my order 4512?" + "</div>" * depth + "</body></html>"


def mail(*, html: str | None = None, text: str | None = "Where is my order 4512?", message_id: str = "deep-1") -> bytes:
    head = (f"From: Hanako <hanako@example.jp>\r\nTo: support@shop.example.jp\r\nSubject: Order\r\n"
            f"Message-ID: <{message_id}@example.jp>\r\nMIME-Version: 1.0\r\n")
    if html is not None and text is not None:
        return (head + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
                "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
                "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n--b--\r\n").encode()
    if html is not None:
        return (head + "Content-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n").encode()
    return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n").encode()


@pytest.fixture
def sanitizer_calls(monkeypatch):
    """Every call of nh3 (the sanitizer and the HTML-to-text conversion both run it)."""
    calls = []
    real = sanitize.nh3.clean

    def counting(markup, *args, **kwargs):
        calls.append(len(markup))
        return real(markup, *args, **kwargs)

    monkeypatch.setattr(sanitize.nh3, "clean", counting)
    return calls


# --- the linear scan --------------------------------------------------------------------------------------------

def test_the_scan_measures_nesting_without_counting_implicitly_closed_or_void_elements():
    assert sanitize.html_shape("<div><div><span>x</span></div></div>").depth == 3
    assert sanitize.html_shape("<p>one<p>two<ul><li>a<li>b</ul><br><img src=x><hr/>" * 500).depth <= 2
    assert sanitize.html_shape("</div></div><b>x</b>").depth == 1  # stray end tags close nothing
    assert sanitize.html_shape(nested_html(), stop_at_depth=400).depth == 401  # gives up past the limit


@pytest.mark.django_db
def test_a_64000_deep_mail_is_stored_flagged_and_never_given_to_the_sanitizer(sanitizer_calls):
    make_inbox(Channel.EMAIL)
    raw = mail(html=nested_html())
    assert len(raw) < 1_000_000
    result = email_receive(raw=raw)
    message = result.message
    assert sanitizer_calls == []
    assert "400 deep" in message.metadata["html_not_rendered"]
    assert message.html == "" and message.text == "Where is my order 4512?"
    assert bytes(RawEmail.objects.get(message=message).raw) == raw  # the original is kept


@pytest.mark.django_db
def test_an_html_only_mail_past_the_bound_is_shown_as_extracted_text(sanitizer_calls):
    make_inbox(Channel.EMAIL)
    message = email_receive(raw=mail(html=nested_html(), text=None)).message
    assert sanitizer_calls == []
    assert message.metadata["html_not_rendered"] and message.html == ""
    assert message.text == "Where is my order 4512?"


@pytest.mark.django_db
@override_settings(CC_EMAIL_HTML_MAX_BYTES=50_000)
def test_html_over_the_size_bound_is_not_sanitized(sanitizer_calls):
    make_inbox(Channel.EMAIL)
    message = email_receive(raw=mail(html="<p>hello</p>" * 10_000)).message
    assert sanitizer_calls == [] and "bytes" in message.metadata["html_not_rendered"]


@pytest.mark.django_db
@override_settings(CC_EMAIL_HTML_BUDGET_SECONDS=0.2)
def test_a_sanitizer_run_past_the_time_budget_is_abandoned_and_the_mail_flagged(monkeypatch):
    release = threading.Event()

    def stuck(markup):
        release.wait(30)
        return "<p>late</p>"

    monkeypatch.setattr(sanitize, "sanitize_html", stuck)
    make_inbox(Channel.EMAIL)
    try:
        message = email_receive(raw=mail(html="<p>Where is my <b>order</b>?</p>")).message
    finally:
        release.set()
    assert "longer than 0.2 s" in message.metadata["html_not_rendered"]
    assert message.html == "" and message.text == "Where is my order 4512?"


@pytest.mark.django_db
def test_ordinary_html_is_still_sanitized_and_not_flagged(sanitizer_calls):
    make_inbox(Channel.EMAIL)
    message = email_receive(raw=mail(html='<div><p>Hi <b>there</b><script>x()</script></p></div>')).message
    assert sanitizer_calls and "html_not_rendered" not in message.metadata
    assert "<b>there</b>" in message.html and "script" not in message.html


@pytest.mark.django_db
@override_settings(CC_EMAIL_WEBHOOK_SECRET="hook-secret")
def test_the_email_webhook_applies_the_same_bound(client, sanitizer_calls):
    make_inbox(Channel.EMAIL)
    response = client.post("/webhooks/email/", data=mail(html=nested_html()), content_type="message/rfc822",
                           HTTP_X_CC_EMAIL_SECRET="hook-secret")
    assert response.status_code == 202
    assert sanitizer_calls == []
    assert Message.objects.get(pk=response.json()["message"]).metadata["html_not_rendered"]


@pytest.mark.django_db
def test_the_console_tells_the_agent_why_the_formatted_version_is_not_shown(client, agent):
    make_inbox(Channel.EMAIL)
    message = email_receive(raw=mail(html=nested_html())).message
    Conversation.objects.filter(pk=message.conversation_id).update(assignee=agent)
    client.force_login(agent.user)
    page = client.get(reverse("console:conversation", args=[message.conversation_id])).content.decode()
    assert "formatted version of this email was too complex to show" in page
    assert "400 deep" in page


# --- the SMTP listener ------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_a_second_mail_over_smtp_is_stored_while_the_first_is_still_being_ingested(monkeypatch):
    make_inbox(Channel.EMAIL)
    first_started, release_first = threading.Event(), threading.Event()
    real_deliver = smtpd.deliver

    def deliver(*, raw, rcpt_tos, mail_from):
        if b"slow-first" in raw:
            first_started.set()
            release_first.wait(30)  # the first mail's ingest is still working…
        return real_deliver(raw=raw, rcpt_tos=rcpt_tos, mail_from=mail_from)

    monkeypatch.setattr(smtpd, "deliver", deliver)
    controller = make_controller(hostname="127.0.0.1", port=free_port())
    controller.start()
    outcome = {}

    def send_first():
        with smtplib.SMTP(controller.hostname, controller.port, timeout=40) as client:
            outcome["first"] = client.sendmail("hanako@example.jp", ["support@shop.example.jp"],
                                               mail(message_id="slow-first"))

    sender = threading.Thread(target=send_first)
    try:
        sender.start()
        assert first_started.wait(20)
        with smtplib.SMTP(controller.hostname, controller.port, timeout=20) as client:
            assert client.sendmail("jiro@example.jp", ["support@shop.example.jp"],
                                   mail(message_id="second")) == {}
        # …and the second one is already stored.
        assert Message.objects.filter(provider_id="second@example.jp").exists()
        assert not Message.objects.filter(provider_id="slow-first@example.jp").exists()
    finally:
        release_first.set()
        sender.join(40)
        controller.stop()
    assert outcome["first"] == {}
    assert Message.objects.filter(provider_id="slow-first@example.jp").exists()


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_smtpd_within_seconds_while_a_heavy_mail_is_being_sanitized(tmp_path):
    make_inbox(Channel.EMAIL)
    env = dict(os.environ)
    if connection.vendor == "sqlite":
        # The test database lives in this process's memory: give the subprocess a copy on disk.
        path = tmp_path / "smtpd.sqlite3"
        with sqlite3.connect(path) as target:
            connection.ensure_connection()
            connection.connection.backup(target)
        env.update({"CC_SQLITE_PATH": str(path)})
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"] = _database_url_for_test_db()
    port = free_port()
    # Bounds lifted so that the sanitizer really chews on the 64,000-deep HTML (tens of seconds).
    env.update({"CC_EMAIL_HTML_MAX_DEPTH": "10000000", "CC_EMAIL_HTML_MAX_TAGS": "10000000",
                "CC_EMAIL_HTML_BUDGET_SECONDS": "600", "CC_SMTP_STOP_GRACE": "2"})
    log = open(tmp_path / "smtpd.log", "w")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "manage.py", "smtpd", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _listening(port), timeout=60)
        client = smtplib.SMTP("127.0.0.1", port, timeout=120)
        client.ehlo()
        client.mail("hanako@example.jp")
        client.rcpt("support@shop.example.jp")
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(mail(html=nested_html()).replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        time.sleep(1.5)  # the listener has the whole mail and is sanitizing it
        assert process.poll() is None
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert time.monotonic() - started < 8
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert "SMTP listener stopped" in (tmp_path / "smtpd.log").read_text()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
