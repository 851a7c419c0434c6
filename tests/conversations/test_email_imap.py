"""IMAP polling against a tiny in-process IMAP4rev1 server (LOGIN, EXAMINE/SELECT with
UIDVALIDITY, UID SEARCH, UID FETCH RFC822/RFC822.SIZE/BODY.PEEK[HEADER]) over a real socket."""

import json
import re
import socketserver
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from contactcenter import tick
from conversations.channels.email import imap
from conversations.models import Channel, ImapCursor, Inbox, Message, RawEmail
from tests.factories import make_inbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"


class Mailbox:
    def __init__(self, uidvalidity=1000):
        self.uidvalidity = uidvalidity
        self.messages: dict[int, bytes] = {}
        self.fetched: list[int] = []
        self.commands: list[str] = []

    def add(self, uid: int, raw: bytes):
        self.messages[uid] = raw


class Handler(socketserver.StreamRequestHandler):
    def send(self, line: bytes):
        self.wfile.write(line + b"\r\n")

    def handle(self):
        box: Mailbox = self.server.mailbox
        self.send(b"* OK tiny IMAP ready")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            tag, _, rest = line.strip().partition(b" ")
            command = rest.decode()
            box.commands.append(command)
            upper = command.upper()
            if upper.startswith("CAPABILITY"):
                self.send(b"* CAPABILITY IMAP4rev1")
            elif upper.startswith("LOGIN"):
                if '"secret"' not in command and " secret" not in command:
                    self.send(tag + b" NO bad credentials")
                    continue
            elif upper.startswith(("SELECT", "EXAMINE")):
                self.send(b"* %d EXISTS" % len(box.messages))
                self.send(b"* OK [UIDVALIDITY %d] UIDs valid" % box.uidvalidity)
            elif upper.startswith("UID SEARCH"):
                start = int(re.search(r"UID (\d+):\*", command).group(1))
                uids = sorted(u for u in box.messages if u >= start) or sorted(box.messages)[-1:]
                self.send(b"* SEARCH " + b" ".join(str(u).encode() for u in uids))
            elif upper.startswith("UID FETCH"):
                uid = int(command.split()[2])
                seq = sorted(box.messages).index(uid) + 1
                raw = box.messages[uid]
                if "RFC822.SIZE" in upper:
                    self.send(b"* %d FETCH (UID %d RFC822.SIZE %d)" % (seq, uid, len(raw)))
                else:
                    body = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" if "HEADER" in upper else raw
                    item = b"BODY[HEADER]" if "HEADER" in upper else b"RFC822"
                    box.fetched.append(uid)
                    self.wfile.write(b"* %d FETCH (UID %d %s {%d}\r\n" % (seq, uid, item, len(body)) + body + b")\r\n")
            elif upper.startswith("LOGOUT"):
                self.send(b"* BYE")
                self.send(tag + b" OK LOGOUT done")
                return
            self.send(tag + b" OK done")


@pytest.fixture
def imap_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.mailbox = Mailbox()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def inbox(db, imap_server):
    inbox = make_inbox(Channel.EMAIL)
    inbox.settings = {"imap": {"host": "127.0.0.1", "port": imap_server.server_address[1], "ssl": False,
                               "username": "support", "password": "secret", "folder": "INBOX", "interval": 60}}
    inbox.save()
    return inbox


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_poll_ingests_new_mail_and_remembers_the_uid(inbox, imap_server):
    box = imap_server.mailbox
    box.add(3, fixture("iso2022jp_nec.eml"))
    box.add(7, fixture("shift_jis.eml"))
    assert imap.poll_mailbox(inbox, imap.imap_configs(inbox)[0], "INBOX") == 2
    texts = [m.text for m in Message.objects.order_by("id")]
    assert "①注文番号 Ⅰ-123 の件です。" in texts[0] and "①数量：１０個" in texts[1]
    message = Message.objects.get(provider_id="sjis-1@mail.example.jp")
    assert message.metadata["imap"] == {"mailbox": "INBOX", "uidvalidity": 1000, "uid": 7}
    assert bytes(RawEmail.objects.get(message=message).raw) == fixture("shift_jis.eml")
    cursor = ImapCursor.objects.get(inbox=inbox, mailbox="INBOX")
    assert (cursor.uidvalidity, cursor.last_uid) == (1000, 7)
    assert any(c.upper().startswith("EXAMINE") for c in box.commands)  # read-only: flags untouched
    # Nothing new: "UID 8:*" still answers the highest UID (7); it is not fetched again.
    box.fetched.clear()
    assert imap.poll_mailbox(inbox, imap.imap_configs(inbox)[0], "INBOX") == 0
    assert box.fetched == []
    box.add(9, fixture("euc_jp.eml"))
    assert imap.poll_mailbox(inbox, imap.imap_configs(inbox)[0], "INBOX") == 1
    assert box.fetched == [9]


def test_uidvalidity_change_refetches_and_message_ids_deduplicate(inbox, imap_server):
    box = imap_server.mailbox
    box.add(1, fixture("euc_jp.eml"))
    imap.poll_mailbox(inbox, imap.imap_configs(inbox)[0], "INBOX")
    box.uidvalidity = 2000
    box.messages = {1: fixture("list_mail.eml"), 2: fixture("euc_jp.eml")}
    assert imap.poll_mailbox(inbox, imap.imap_configs(inbox)[0], "INBOX") == 2
    assert Message.objects.filter(provider_id="euc-1@mail.example.jp").count() == 1
    assert Message.objects.count() == 2
    cursor = ImapCursor.objects.get(inbox=inbox)
    assert (cursor.uidvalidity, cursor.last_uid) == (2000, 2)


@override_settings(CC_MAX_EMAIL_BYTES=600)
def test_oversized_mail_is_kept_as_a_header_only_notice(inbox, imap_server):
    imap_server.mailbox.add(4, fixture("shift_jis.eml"))
    imap.poll_mailbox(inbox, imap.imap_configs(inbox)[0], "INBOX")
    message = Message.objects.get()
    assert "over the 600-byte limit" in message.text
    assert message.conversation.subject == "見積もり依頼"
    assert message.metadata["notice"]


def test_a_poisoned_mail_is_retried_then_skipped(inbox, imap_server, monkeypatch):
    imap_server.mailbox.add(1, fixture("euc_jp.eml"))
    imap_server.mailbox.add(2, fixture("list_mail.eml"))
    from conversations.channels.email import ingest as email_service

    real = email_service.email_receive

    def flaky(*, raw, **kwargs):
        if b"euc-1@" in raw:
            raise RuntimeError("boom")
        return real(raw=raw, **kwargs)

    monkeypatch.setattr(email_service, "email_receive", flaky)
    config = imap.imap_configs(inbox)[0]
    for _ in range(imap.MAX_FAILURES - 1):
        assert imap.poll_mailbox(inbox, config, "INBOX") == 0
    assert imap.poll_mailbox(inbox, config, "INBOX") == 2  # skipped after the last try; the next one goes on
    cursor = ImapCursor.objects.get(inbox=inbox)
    assert cursor.last_uid == 2 and "uid 1" in cursor.last_error
    assert Message.objects.get().provider_id == "list-1@lists.example.org"


def test_tick_job_polls_only_when_the_interval_has_elapsed(inbox, imap_server):
    assert "imap_poll" in tick.registered()
    imap_server.mailbox.add(1, fixture("euc_jp.eml"))
    now = timezone.now()
    assert imap.imap_poll_due(now=now) == 1
    imap_server.mailbox.add(2, fixture("list_mail.eml"))
    assert imap.imap_poll_due(now=now + timedelta(seconds=5)) == 0  # not due yet
    assert imap.imap_poll_due(now=now + timedelta(seconds=61)) == 1


def test_the_password_can_come_from_the_environment_instead_of_the_database(inbox, monkeypatch, caplog):
    """``password_env``: the secret stays out of the database (and of the admin's JSON field); a
    variable that is not set is recorded on the mailbox like a refused login. A password stored in
    the settings (from before the admin refused it) still logs in, and the workers' log says where
    it belongs each time; the password itself is never logged."""
    with caplog.at_level("WARNING", logger="conversations.channels.email.imap"):
        assert imap.imap_poll_due() == 0
    stored = [r.getMessage() for r in caplog.records if "stored in its inbox's settings" in r.getMessage()]
    assert stored == ["IMAP mailbox support at 127.0.0.1 logs in with a password stored in its inbox's settings: "
                      "put it in an environment variable of the workers and name it in password_env"]
    assert ImapCursor.objects.get(inbox=inbox).last_error == ""
    caplog.clear()
    ImapCursor.objects.filter(inbox=inbox).update(last_polled_at=None)  # due again

    del inbox.settings["imap"]["password"]
    inbox.settings["imap"]["password_env"] = "CC_TEST_IMAP_PASSWORD"
    inbox.save()
    monkeypatch.delenv("CC_TEST_IMAP_PASSWORD", raising=False)
    assert imap.imap_poll_due() == 0
    assert "password_env CC_TEST_IMAP_PASSWORD is not set" in ImapCursor.objects.get(inbox=inbox).last_error

    monkeypatch.setenv("CC_TEST_IMAP_PASSWORD", "secret")
    ImapCursor.objects.filter(inbox=inbox).update(last_polled_at=None)  # due again
    with caplog.at_level("WARNING", logger="conversations.channels.email.imap"):
        imap.imap_poll_due()
    assert ImapCursor.objects.get(inbox=inbox).last_error == ""  # logged in: the old error is gone
    assert not [r for r in caplog.records if "stored in its inbox's settings" in r.getMessage()]
    assert "secret" not in json.dumps(Inbox.objects.get(pk=inbox.pk).settings)


def test_bad_credentials_are_recorded_not_raised(inbox):
    inbox.settings["imap"]["password"] = "wrong"
    inbox.save()
    assert imap.imap_poll_due() == 0
    assert "bad credentials" in ImapCursor.objects.get(inbox=inbox).last_error
