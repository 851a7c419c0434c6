"""Channels and inboxes (the configured endpoints), and what providers sent or were sent, kept raw.
"""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..inbox_settings import settings_problems, stores_imap_password


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    EMAIL = "email", _("Email")
    WEBCHAT = "webchat", _("Web chat")
    VOICE = "voice", _("Voice")


# WhatsApp carries free-form replies only this long after the customer's last message; after it,
# an approved template (Twilio error 63016).
WHATSAPP_WINDOW = timedelta(hours=24)


class Inbox(models.Model):
    """One configured endpoint: a Twilio number, a WhatsApp sender, a mailbox, a widget, a voice line."""

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=16, choices=Channel.choices)
    address = models.CharField(_("address"), max_length=320, help_text=_("E.164 number, email address, or widget key"))
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    secret = models.CharField(
        _("secret"), max_length=128, blank=True, help_text=_("Widget HMAC / email webhook secret"))
    reopen_window_days = models.PositiveIntegerField(_("reopen window days"), default=7)
    default_queue = models.ForeignKey(
        "Queue", verbose_name=_("default queue"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    is_active = models.BooleanField(_("is active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("inbox")
        verbose_name_plural = _("inboxes")
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "address"], name="inbox_unique_kind_address")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()} {self.address})"

    def clean(self):
        # Routing places a conversation in its inbox's queue when no rule says otherwise: a queue
        # that does not take this channel would hold conversations none of its rules could send it.
        errors = {}
        queue = self.default_queue
        if queue is not None and not queue.takes(self.kind):
            errors["default_queue"] = _("%(queue)s does not take %(channel)s conversations.") % {
                "queue": queue.name, "channel": self.get_kind_display()}
        # A mailbox password typed into the settings would be stored in the database and shown to
        # every admin who opens the inbox: it goes in the workers' environment (channels/imap.py).
        # An inbox saved before still polls with it; it is refused when the inbox is next saved here.
        if stores_imap_password(self.settings):
            errors["settings"] = _(
                'Do not store the IMAP password here: put it in an environment variable of the workers and '
                'name that variable in "password_env" (e.g. "password_env": "CC_IMAP_PASSWORD_SUPPORT").')
        # The channel's own checks (a voice line's IVR), registered by the channel.
        problems = settings_problems(self.kind, self.settings)
        if problems:
            errors["settings"] = [*([errors["settings"]] if "settings" in errors else []), *problems]
        if errors:
            raise ValidationError(errors)


class RecordedProviderRequest(models.Model):
    """A request our code made to a provider while no real credentials are configured.

    The local Twilio HTTP client (and the simulator's email backend) record here what a real
    provider would have received; the customer simulator shows it as the customer's phone/inbox.
    """

    provider = models.CharField(_("provider"), max_length=32)  # "twilio", "email"
    method = models.CharField(_("method"), max_length=8)
    uri = models.CharField(_("uri"), max_length=2000)
    params = models.JSONField(_("params"), default=dict)
    sid = models.CharField(_("sid"), max_length=64, blank=True, db_index=True)
    to = models.CharField(_("to"), max_length=320, blank=True, db_index=True)
    from_address = models.CharField(_("from address"), max_length=320, blank=True)
    body = models.TextField(_("body"), blank=True)
    status_code = models.PositiveSmallIntegerField(_("status code"), default=201)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("recorded provider request")
        verbose_name_plural = _("recorded provider requests")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.provider} {self.method} → {self.to or self.uri}"


class ImapCursor(models.Model):
    """How far an IMAP mailbox of an email inbox has been read. A UID is only meaningful with its
    UIDVALIDITY: when the server changes it, the cursor restarts and Message-IDs deduplicate."""

    inbox = models.ForeignKey(Inbox, verbose_name=_("inbox"), on_delete=models.CASCADE, related_name="imap_cursors")
    mailbox = models.CharField(_("mailbox"), max_length=255, default="INBOX")
    uidvalidity = models.BigIntegerField(_("uidvalidity"), default=0)
    last_uid = models.BigIntegerField(_("last uid"), default=0)
    last_polled_at = models.DateTimeField(_("last polled at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # A mail that keeps failing is retried a few times, then skipped (it stays on the server and
    # last_error names it) so one poisoned message cannot stall the mailbox forever.
    failing_uid = models.BigIntegerField(_("failing uid"), default=0)
    failures = models.PositiveIntegerField(_("failures"), default=0)

    class Meta:
        verbose_name = _("imap cursor")
        verbose_name_plural = _("imap cursors")
        constraints = [models.UniqueConstraint(fields=["inbox", "mailbox"], name="imap_cursor_unique_inbox_mailbox")]

    def __str__(self) -> str:
        return f"{self.inbox.address} {self.mailbox} uidvalidity={self.uidvalidity} last_uid={self.last_uid}"


class TwilioInboundEvent(models.Model):
    """One inbound SMS/MMS/WhatsApp webhook exactly as Twilio posted it (twilio.md §1).

    The webhook stores this row (one INSERT, unique on MessageSid, so a Twilio retry or a
    concurrent duplicate is a no-op) and answers at once; ``process_twilio_inbound`` then does the
    ingest and sets ``processed_at`` in the same transaction. An event that keeps failing stays
    here with its error (``failed_at``) for an admin to look at: nothing Twilio sent is lost.
    """

    message_sid = models.CharField(_("message sid"), max_length=64, unique=True)
    account_sid = models.CharField(_("account sid"), max_length=64, blank=True)
    # From and To as posted (``whatsapp:`` prefix included): enough to find an event in the admin.
    sender = models.CharField(_("sender"), max_length=64, blank=True)
    recipient = models.CharField(_("recipient"), max_length=64, blank=True)
    payload = models.JSONField(_("payload"), help_text=_("Every form parameter Twilio posted"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    # When the next try is due: received_at at first, then pushed back after each failure. The
    # recovery tick re-queues events whose try is overdue (lost task, crashed worker).
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    failed_at = models.DateTimeField(
        _("failed at"), null=True, blank=True, help_text=_("Gave up: bad input or too many attempts"))

    class Meta:
        verbose_name = _("twilio inbound event")
        verbose_name_plural = _("twilio inbound events")
        # Newest first by primary key: no extra index to maintain on the webhook's one INSERT.
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="twilio_inbound_due_idx",
                condition=Q(processed_at__isnull=True, failed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.message_sid
