"""IMAP polling of the mailboxes configured on email inboxes (imaplib, read-only).

``inbox.settings["imap"]`` is one mapping or a list of them::

    {"host": "imap.example.jp", "port": 993, "ssl": true, "username": "…",
     "password_env": "CC_IMAP_PASSWORD_SUPPORT", "folder": "INBOX" (or "folders": [...]), "interval": 60}

``password_env`` names the environment variable holding the password (of the worker processes,
which poll), so the secret is neither in the database nor shown to every admin who opens the
inbox. A plain ``"password"`` is still read, for setups made before; the admin refuses it when
the inbox is next saved (``Inbox.clean``), with where it belongs, warns whoever opens that inbox,
and each login with it logs a warning.

Deduplication is twofold: ``ImapCursor`` remembers (UIDVALIDITY, last UID) per mailbox, so a poll
fetches only new UIDs, and when the server changes UIDVALIDITY the cursor restarts from zero and
the Message-ID (the ingest's provider id) makes every mail already stored a no-op. Mailboxes are
opened with EXAMINE: polling never changes flags or deletes anything on the server.
"""

import imaplib
import logging
import os
import re
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ...inbox_settings import imap_entries
from ...models import Channel, ImapCursor, Inbox

logger = logging.getLogger(__name__)

BATCH = 100  # mails per mailbox per poll: a backlog drains over a few ticks, a tick stays short
MAX_FAILURES = 3
TIMEOUT = 30


def imap_configs(inbox: Inbox) -> list[dict]:
    """The mailboxes of ``inbox`` to poll: those with a host and a user name."""
    return [c for c in imap_entries(inbox.settings) if c.get("host") and c.get("username")]


def _folders(config: dict) -> list[str]:
    folders = config.get("folders") or [config.get("folder") or "INBOX"]
    return [str(f) for f in folders]


def _connect(config: dict) -> imaplib.IMAP4:
    host, use_ssl = config["host"], bool(config.get("ssl", True))
    port = int(config.get("port") or (993 if use_ssl else 143))
    if use_ssl:
        connection = imaplib.IMAP4_SSL(host, port, timeout=TIMEOUT)
    else:
        connection = imaplib.IMAP4(host, port, timeout=TIMEOUT)
        if config.get("starttls"):
            connection.starttls()
    try:
        connection.login(config["username"], _password(config))
    except BaseException:
        connection.shutdown()
        raise
    return connection


def _password(config: dict) -> str:
    name = str(config.get("password_env") or "")
    if not name:
        if "password" in config:
            # Stored in the database, where every admin who opens the inbox reads it: said where the
            # people running the workers look, until someone moves it (the admin names it too).
            logger.warning("IMAP mailbox %s at %s logs in with a password stored in its inbox's settings: "
                           "put it in an environment variable of the workers and name it in password_env",
                           config.get("username"), config.get("host"))
        return str(config.get("password", ""))
    password = os.environ.get(name)
    if password is None:
        # Recorded on the mailbox's cursor like a refused login, where the admin looks.
        raise imaplib.IMAP4.error(f"password_env {name} is not set in the environment of the worker")
    return password


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fetch_parts(data) -> tuple[bytes, bytes]:
    """(the response line, the literal) of a single-message FETCH answer."""
    for item in data or []:
        if isinstance(item, tuple) and len(item) >= 2:
            return item[0], item[1]
    line = next((item for item in data or [] if isinstance(item, bytes)), b"")
    return line, b""


def _size(connection: imaplib.IMAP4, uid: int) -> int:
    typ, data = connection.uid("FETCH", str(uid), "(RFC822.SIZE)")
    line, _ = _fetch_parts(data)
    match = re.search(rb"RFC822\.SIZE (\d+)", line or b"")
    return int(match.group(1)) if match else 0


def poll_mailbox(inbox: Inbox, config: dict, mailbox: str) -> int:
    """Fetch and ingest the new mail of one mailbox; returns the number of mails handled. Network
    errors propagate (the next poll retries from the cursor, nothing is skipped)."""
    from .ingest import email_receive

    cursor, _ = ImapCursor.objects.get_or_create(inbox=inbox, mailbox=mailbox)
    connection = _connect(config)
    handled = 0
    try:
        typ, _data = connection.select(_quote(mailbox), readonly=True)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"cannot open {mailbox}: {_data!r}")
        uidvalidity = int((connection.response("UIDVALIDITY")[1] or [b"0"])[0] or 0)
        if uidvalidity != cursor.uidvalidity:
            # UIDs of the old validity mean nothing now: start over, Message-IDs deduplicate.
            cursor.uidvalidity, cursor.last_uid, cursor.failing_uid, cursor.failures = uidvalidity, 0, 0, 0
            cursor.save(update_fields=["uidvalidity", "last_uid", "failing_uid", "failures"])
        typ, data = connection.uid("SEARCH", None, f"UID {cursor.last_uid + 1}:*")
        # "n:*" always matches the highest UID, even below n: filter on our side.
        uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > cursor.last_uid)[:BATCH]
        limit = settings.CC_MAX_EMAIL_BYTES
        for uid in uids:
            extra = {"imap": {"mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid}}
            try:
                size = _size(connection, uid)
                if size > limit:
                    # Left on the server; the agent sees the sender, subject and why the body is missing.
                    _typ, data = connection.uid("FETCH", str(uid), "(BODY.PEEK[HEADER])")
                    header = _fetch_parts(data)[1] or b""
                    email_receive(raw=header, inbox=inbox, source="imap", extra_metadata=extra,
                                  notice=f"[This email is {size} bytes, over the {limit}-byte limit; "
                                         f"only its headers were fetched. It stays in the mailbox {mailbox}.]")
                else:
                    _typ, data = connection.uid("FETCH", str(uid), "(RFC822)")
                    raw = _fetch_parts(data)[1]
                    if raw:
                        email_receive(raw=raw, inbox=inbox, source="imap", extra_metadata=extra)
            except (imaplib.IMAP4.abort, OSError):
                raise
            except Exception as exc:  # noqa: BLE001 - retried a few times, then skipped with a trace
                if cursor.failing_uid == uid:
                    cursor.failures += 1
                else:
                    cursor.failing_uid, cursor.failures = uid, 1
                cursor.last_error = f"uid {uid}: {type(exc).__name__}: {exc}"[:2000]
                logger.exception("IMAP %s %s uid %s failed (%s/%s)", inbox.address, mailbox, uid, cursor.failures,
                                 MAX_FAILURES)
                if cursor.failures < MAX_FAILURES:
                    cursor.save(update_fields=["failing_uid", "failures", "last_error"])
                    break
                logger.error("IMAP %s %s uid %s skipped after %s failures; it stays on the server",
                             inbox.address, mailbox, uid, cursor.failures)
            else:
                if cursor.failing_uid == uid:
                    cursor.failing_uid, cursor.failures = 0, 0
            cursor.last_uid = uid
            cursor.save(update_fields=["last_uid", "failing_uid", "failures", "last_error"])
            handled += 1
    finally:
        try:
            connection.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    return handled


def _claim(cursor: ImapCursor, interval: int, now) -> bool:
    """Take this mailbox's turn: only one worker polls a mailbox per interval, whichever claims
    the row first (the conditional UPDATE is the lock)."""
    due = Q(last_polled_at__isnull=True) | Q(last_polled_at__lte=now - timedelta(seconds=interval))
    return ImapCursor.objects.filter(due, pk=cursor.pk).update(last_polled_at=now) == 1


def imap_poll_due(*, now=None) -> int:
    """The periodic tick job: poll every configured mailbox whose interval has elapsed."""
    now = now or timezone.now()
    handled = 0
    for inbox in Inbox.objects.filter(kind=Channel.EMAIL, is_active=True):
        for config in imap_configs(inbox):
            interval = int(config.get("interval") or settings.CC_IMAP_DEFAULT_INTERVAL)
            for mailbox in _folders(config):
                cursor, _ = ImapCursor.objects.get_or_create(inbox=inbox, mailbox=mailbox)
                if not _claim(cursor, interval, now):
                    continue
                try:
                    handled += poll_mailbox(inbox, config, mailbox)
                    # The mailbox answers again: a connection or login error is history (a mail
                    # still being retried keeps its own, with failing_uid set).
                    ImapCursor.objects.filter(pk=cursor.pk, failing_uid=0).exclude(last_error="").update(last_error="")
                except (imaplib.IMAP4.error, OSError) as exc:
                    logger.warning("IMAP poll of %s %s failed: %s", inbox.address, mailbox, exc)
                    ImapCursor.objects.filter(pk=cursor.pk).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
    return handled
