"""Messages (inbound, outbound, notes, events), their delivery states and attachments, and raw mail.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from profiles.models import Customer

from .. import event_texts
from .agents import Agent
from .conversation import Conversation
from .field_callables import attachment_path
from .inboxes import Channel, Inbox


class Direction(models.TextChoices):
    INBOUND = "inbound", _("Inbound")
    OUTBOUND = "outbound", _("Outbound")
    INTERNAL = "internal", _("Internal")


class MessageKind(models.TextChoices):
    MESSAGE = "message", _("Message")
    NOTE = "note", _("Private note")
    EVENT = "event", _("System event")


class DeliveryStatus(models.TextChoices):
    """Twilio's message statuses plus our own ``pending`` (stored, not yet handed to the provider)."""

    PENDING = "pending", _("Pending")
    ACCEPTED = "accepted", _("Accepted")
    SCHEDULED = "scheduled", _("Scheduled")
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    RECEIVING = "receiving", _("Receiving")
    RECEIVED = "received", _("Received")
    PARTIALLY_DELIVERED = "partially_delivered", _("Partially delivered")
    DELIVERED = "delivered", _("Delivered")
    UNDELIVERED = "undelivered", _("Undelivered")
    FAILED = "failed", _("Failed")
    READ = "read", _("Read")
    CANCELED = "canceled", _("Canceled")


class EventType(models.TextChoices):
    """System events shown on the timeline."""

    CREATED = "created", _("Conversation opened")
    REOPENED = "reopened", _("Reopened")
    OFFERED = "offered", _("Offered")
    ASSIGNED = "assigned", _("Assigned")
    TRANSFERRED = "transferred", _("Transferred")
    SNOOZED = "snoozed", _("Snoozed")
    RESOLVED = "resolved", _("Resolved")
    ABANDONED = "abandoned", _("Customer left before an agent answered")
    SURVEY_SENT = "survey_sent", _("Survey sent")
    SURVEY_ANSWERED = "survey_answered", _("Survey answered")
    SURVEY_SKIPPED = "survey_skipped", _("Survey not sent")
    CONSENT_CHANGED = "consent_changed", _("Consent changed")
    # Voice (conversations/channels/twilio_voice): each step of a call on the customer's timeline;
    # the agent's side of it comes from the softphone (twilio_voice/softphone).
    CALL_STARTED = "call_started", _("Call started")
    IVR_CHOICE = "ivr_choice", _("IVR choice")
    CALL_QUEUED = "call_queued", _("Call queued")
    CALL_CONNECTED = "call_connected", _("Call answered")
    CALL_HELD = "call_held", _("Call on hold")
    CALL_RESUMED = "call_resumed", _("Call resumed")
    CALL_CONSULT = "call_consult", _("Consulting a colleague")
    CALL_JOINED = "call_joined", _("Colleague joined the call")
    CALL_LEFT = "call_left", _("Left the call")
    CALL_ENDED = "call_ended", _("Call ended")
    CALL_PLACED = "call_placed", _("Outbound call placed")
    VOICEMAIL = "voicemail", _("Voicemail")
    CALLBACK_REQUESTED = "callback_requested", _("Callback requested")
    CALLBACK_STARTED = "callback_started", _("Calling the customer back")


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, verbose_name=_("conversation"), on_delete=models.CASCADE, related_name="messages")
    # Copies of the conversation's customer, inbox and channel: the timeline reads one index
    # (customer, created_at, id) without a join, and provider ids are unique per inbox.
    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.PROTECT, related_name="+")
    inbox = models.ForeignKey(Inbox, verbose_name=_("inbox"), on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    direction = models.CharField(_("direction"), max_length=16, choices=Direction.choices)
    kind = models.CharField(_("kind"), max_length=16, choices=MessageKind.choices, default=MessageKind.MESSAGE)
    author_agent = models.ForeignKey(
        Agent, verbose_name=_("author agent"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField(_("text"), blank=True)
    html = models.TextField(_("html"), blank=True, help_text=_("Sanitized HTML (email); never raw customer markup"))
    event_type = models.CharField(_("event type"), max_length=32, blank=True, choices=EventType.choices)
    event_data = models.JSONField(_("event data"), default=dict, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True, help_text=_("Headers, provider fields"))
    provider_id = models.CharField(_("provider id"), max_length=255, null=True, blank=True)
    delivery_status = models.CharField(_("delivery status"), max_length=24, blank=True, choices=DeliveryStatus.choices)
    delivery_error_code = models.CharField(_("delivery error code"), max_length=32, blank=True)
    delivery_error = models.TextField(_("delivery error"), blank=True)
    # Set while one worker is handing the message to the provider: two executions of the same
    # delivery task (a redelivered message, a manual retry) must never both send it.
    delivery_claimed_at = models.DateTimeField(_("delivery claimed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    # Position in the conversation (1, 2, 3 …), in commit order: see ``Conversation.last_seq``.
    seq = models.PositiveBigIntegerField(_("seq"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_unique_conversation_seq"),
            models.UniqueConstraint(
                fields=["inbox", "provider_id"],
                condition=Q(provider_id__isnull=False),
                name="message_unique_inbox_provider_id",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "created_at", "id"], name="message_timeline_idx"),
            models.Index(fields=["conversation", "created_at", "id"], name="message_conversation_idx"),
            models.Index(fields=["provider_id"], name="message_provider_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.get_kind_display()} #{self.pk}"

    def _quote_start(self) -> int | None:
        raw = getattr(self, "quote_start_raw", None)
        if raw is None and "metadata" in self.__dict__:
            raw = (self.metadata or {}).get("quote_start")
        try:
            return int(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            return None

    @property
    def own_text(self) -> str:
        """What the customer wrote, without the quoted history of an email reply."""
        start = self._quote_start()
        return self.text[:start].rstrip() if start is not None else self.text

    @property
    def quoted_text(self) -> str:
        """The quoted history (collapsed in the display, never deleted)."""
        start = self._quote_start()
        return self.text[start:] if start is not None else ""

    @property
    def event_detail(self) -> str:
        """An event's words after its type on the timeline, in the active language where the app
        that writes the event registered them (``conversations.event_texts``), else as stored."""
        return event_texts.event_text(event_type=self.event_type, data=self.event_data, stored=self.text)

    @property
    def author_label(self) -> str:
        if self.author_agent_id:
            return self.author_agent.display_name
        if self.direction == Direction.INBOUND:
            return str(self.customer)
        return ""


class MessageStatusEvent(models.Model):
    """Every delivery status report, kept. ``message`` is null until the message is known."""

    message = models.ForeignKey(
        Message, verbose_name=_("message"), null=True, blank=True, on_delete=models.CASCADE,
        related_name="status_events")
    provider_id = models.CharField(_("provider id"), max_length=255)
    status = models.CharField(_("status"), max_length=24, choices=DeliveryStatus.choices)
    error_code = models.CharField(_("error code"), max_length=32, blank=True)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)

    class Meta:
        verbose_name = _("message status event")
        verbose_name_plural = _("message status events")
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["provider_id", "status"], name="status_event_unique_sid_status")
        ]
        indexes = [models.Index(fields=["message", "received_at"], name="status_event_message_idx")]

    def __str__(self) -> str:
        return f"{self.provider_id}: {self.status}"


class AttachmentState(models.TextChoices):
    STORED = "stored", _("Stored")
    PENDING = "pending", _("Waiting to be fetched")
    UNAVAILABLE = "unavailable", _("Unavailable")


class Attachment(models.Model):
    message = models.ForeignKey(
        Message, verbose_name=_("message"), on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(_("file"), upload_to=attachment_path, blank=True)
    filename = models.CharField(_("filename"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=255, blank=True)
    size = models.PositiveBigIntegerField(_("size"), default=0)
    source_url = models.CharField(_("source url"), max_length=2000, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=AttachmentState.choices, default=AttachmentState.STORED)
    state_reason = models.CharField(_("state reason"), max_length=300, blank=True)
    # An email part's Content-ID, without its angle brackets: the formatted email's <img src="cid:…">
    # shows this attachment (console.views.message_html).
    content_id = models.CharField(_("content id"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        ordering = ["id"]

    def __str__(self) -> str:
        return self.filename


class RawEmail(models.Model):
    """The inbound mail exactly as it arrived, byte for byte: parsing is best-effort and may
    improve, so the original is kept to re-parse, to audit and to show "view source"."""

    message = models.OneToOneField(
        Message, verbose_name=_("message"), on_delete=models.CASCADE, related_name="raw_email")
    raw = models.BinaryField(_("raw"))
    size = models.PositiveBigIntegerField(_("size"), default=0)
    sha256 = models.CharField(_("sha256"), max_length=64, db_index=True)
    source = models.CharField(_("source"), max_length=16, blank=True, help_text=_("smtp, webhook or imap"))
    envelope_from = models.CharField(_("envelope from"), max_length=320, blank=True)
    envelope_to = models.JSONField(_("envelope to"), default=list, blank=True)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)

    class Meta:
        verbose_name = _("raw email")
        verbose_name_plural = _("raw emails")

    def __str__(self) -> str:
        return f"raw email of message #{self.message_id} ({self.size} bytes)"
