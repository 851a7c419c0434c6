"""Inboxes, conversations, messages, agents and the routing configuration they hang on.

Every channel (SMS, WhatsApp, email, web chat, voice) is carried by the same rows: a Conversation
on an Inbox, Messages with a per-inbox unique provider id (idempotent ingest), delivery status
events kept one by one. Routing fields (queue, priority, waiting_since) are here from the start.
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import get_language, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from contactcenter.indexes import NullsFirstIndex
from profiles.models import Customer

from .inbox_settings import stores_imap_password
from .routing.hours import validate_config
from .routing.rules import compile_rule


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    EMAIL = "email", _("Email")
    WEBCHAT = "webchat", _("Web chat")
    VOICE = "voice", _("Voice")


# WhatsApp carries free-form replies only this long after the customer's last message; after it,
# an approved template (Twilio error 63016).
WHATSAPP_WINDOW = timedelta(hours=24)

DEFAULT_CAPACITY = {"voice": 1, "webchat": 3, "sms": 5, "whatsapp": 5, "email": 5}


def default_capacity() -> dict[str, int]:
    return dict(DEFAULT_CAPACITY)


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
        if errors:
            raise ValidationError(errors)


class Skill(models.Model):
    name = models.CharField(_("name"), max_length=64)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("skill")
        verbose_name_plural = _("skills")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AfterHoursAction(models.TextChoices):
    QUEUE = "queue", _("Tell the customer and keep the conversation queued")
    # A follow-up, not a live wait: the customer is told when and where the answer will come (by
    # email when we know their address), leaving does not cancel it, and it is answered from the
    # follow-up queue (or this one once it opens). Calls: the voicemail becomes such a follow-up.
    VOICEMAIL = "voicemail", _("Voicemail / email fallback")


class OfflinePolicy(models.TextChoices):
    STAY = "stay", _("Conversations stay with the agent")
    REQUEUE = "requeue", _("Back to the queue after a grace period")


class Queue(models.Model):
    """Where waiting conversations wait. Routing (business hours, overflow, steps) extends it."""

    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    channels = models.JSONField(_("channels"), default=list, blank=True, help_text=_("Channels served; empty = all"))
    required_skills = models.ManyToManyField(
        Skill, verbose_name=_("required skills"), through="QueueSkill", blank=True, related_name="queues")
    priority = models.IntegerField(_("priority"), default=0)
    sla_seconds = models.PositiveIntegerField(_("sla seconds"), default=60, help_text=_("Service-level threshold"))
    is_active = models.BooleanField(_("is active"), default=True)
    is_default = models.BooleanField(
        _("is default"), default=False, help_text=_("Where conversations go when no routing rule matches"))
    business_hours = models.JSONField(
        _("business hours"),
        default=dict, blank=True,
        help_text=_('{"time_zone": "Asia/Tokyo", "weekly": {"mon": [["09:00", "18:00"]], …}, "holidays": ["2026-01-01"]}; '
                    "empty = always open"),
    )
    after_hours_action = models.CharField(
        _("after hours action"), max_length=16, choices=AfterHoursAction.choices, default=AfterHoursAction.QUEUE)
    after_hours_message = models.TextField(
        _("after hours message"),
        blank=True, help_text=_("Sent once when a conversation arrives while the queue is closed. {opens}: when it "
                                "opens (the queue's time zone); {reply_to}: where a follow-up answer will go."))
    after_hours_fallback_queue = models.ForeignKey(
        "self", verbose_name=_("after hours fallback queue"),
        null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text=_("Voicemail / email fallback: where after-hours follow-ups are answered (e.g. the email team); "
                    "empty = this queue, once it opens"))
    overflow_queue = models.ForeignKey(
        "self", verbose_name=_("overflow queue"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    overflow_after_seconds = models.PositiveIntegerField(_("overflow after seconds"), null=True, blank=True)
    offer_timeout_seconds = models.PositiveIntegerField(_("offer timeout seconds"), default=120)
    auto_accept = models.BooleanField(
        _("auto accept"), default=False, help_text=_("Assign directly instead of offering (messaging)"))
    known_agent_window_days = models.PositiveIntegerField(
        _("known agent window days"), default=30, help_text=_("0 disables the known-agent step"))
    known_agent_timeout_seconds = models.PositiveIntegerField(_("known agent timeout seconds"), default=30)
    allow_pick = models.BooleanField(
        _("allow pick"), default=True, help_text=_("Agents may pick waiting conversations themselves"))
    wrap_up_required = models.BooleanField(_("wrap up required"), default=False)
    offline_policy = models.CharField(
        _("offline policy"), max_length=16, choices=OfflinePolicy.choices, default=OfflinePolicy.STAY)
    offline_grace_seconds = models.PositiveIntegerField(_("offline grace seconds"), default=300)

    class Meta:
        verbose_name = _("queue")
        verbose_name_plural = _("queues")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.business_hours:
            try:
                validate_config(self.business_hours)
            except ValidationError as exc:
                raise ValidationError({"business_hours": exc.messages}) from exc
        if self.overflow_queue_id and self.overflow_queue_id == self.pk:
            raise ValidationError({"overflow_queue": _("A queue cannot overflow into itself.")})
        if self.after_hours_fallback_queue_id and self.after_hours_fallback_queue_id == self.pk:
            raise ValidationError({"after_hours_fallback_queue": _("Leave this empty to answer follow-ups in this queue.")})
        # Every conversation this queue holds must fit the queue it overflows into (routing leaves
        # it waiting here otherwise), and the queues overflowing into this one must still fit it.
        if self.overflow_queue is not None and (missing := self.channels_not_taken_by(self.overflow_queue)):
            raise ValidationError({"overflow_queue": _("%(queue)s does not take %(channels)s conversations.") % {
                "queue": self.overflow_queue.name, "channels": missing}})
        if self.pk:
            for source in Queue.objects.filter(overflow_queue=self.pk).exclude(pk=self.pk):
                if missing := source.channels_not_taken_by(self):
                    raise ValidationError({"channels": _(
                        "%(source)s overflows into this queue with %(channels)s conversations: keep those "
                        "channels, or change its overflow first.") % {"source": source.name, "channels": missing}})

    def takes(self, channel: str) -> bool:
        """Conversations of ``channel`` may wait here (``channels`` empty: every channel). Asked
        wherever a conversation enters a queue: rules, the inbox's default, overflow, transfers."""
        return not self.channels or channel in self.channels

    def channels_not_taken_by(self, other: "Queue") -> str:
        """The channels this queue takes that ``other`` does not, for a message ("" if none)."""
        labels = dict(Channel.choices)
        mine = self.channels or list(labels)
        return ", ".join(str(labels.get(value, value)) for value in mine if not other.takes(value))


class QueueSkill(models.Model):
    """A skill a queue requires, and the least level an agent must have in it to be offered the
    queue's conversations (or to pick them). Levels are the admin's scale (AgentSkill.level); 1, the
    default, asks only for the skill."""

    queue = models.ForeignKey(Queue, verbose_name=_("queue"), on_delete=models.CASCADE)
    skill = models.ForeignKey(Skill, verbose_name=_("skill"), on_delete=models.CASCADE)
    min_level = models.PositiveSmallIntegerField(
        _("min level"),
        default=1, validators=[MinValueValidator(1)], help_text=_("Agents need at least this level in the skill"))

    class Meta:
        verbose_name = _("required skill")
        verbose_name_plural = _("required skills")
        # The table the plain many-to-many had (migration 0017 keeps it, adding the level).
        db_table = "conversations_queue_required_skills"
        unique_together = [("queue", "skill")]

    def __str__(self) -> str:
        return f"{self.skill} ≥ {self.min_level}"


class RoutingRule(models.Model):
    """Ordered filters over the conversation and customer; the first match picks the queue."""

    name = models.CharField(_("name"), max_length=100)
    order = models.PositiveIntegerField(_("order"), default=0)
    expression = models.TextField(
        _("expression"),
        blank=True, help_text=_('e.g. channel == "sms" and "VIP" in tags and language == "ja"; empty matches all')
    )
    queue = models.ForeignKey(Queue, verbose_name=_("queue"), on_delete=models.CASCADE, related_name="rules")
    is_active = models.BooleanField(_("is active"), default=True)

    class Meta:
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.order}. {self.name} → {self.queue}"

    def clean(self) -> None:
        try:
            compile_rule(self.expression)
        except ValidationError as exc:
            raise ValidationError({"expression": exc.messages}) from exc


# The presences the product creates itself (the demo's, "Missed offer" when an offer times out,
# "Offline" for signed-out agents), in the user's language on screen for as long as they keep the
# name they were created with. A name an admin entered or changed is data: shown as entered, and
# the API and the admin always show the stored name.
BUILT_IN_PRESENCE_LABELS = {
    "Available": pgettext_lazy("presence", "Available"),
    "Break": pgettext_lazy("presence", "Break"),
    "Lunch": pgettext_lazy("presence", "Lunch"),
    "Offline": pgettext_lazy("presence", "Offline"),
    "Missed offer": pgettext_lazy("presence", "Missed offer"),
}


def presence_label(name: str) -> str:
    """How the console names a presence called ``name``: a built-in one in the active language,
    else as entered (for a presence known only by name, e.g. in an event kept for later)."""
    return str(BUILT_IN_PRESENCE_LABELS.get(name, name))


class PresenceState(models.Model):
    """A presence an agent can be in (Available, Break, Lunch, Offline …); only some take work."""

    name = models.CharField(_("name"), max_length=50, unique=True)
    is_available = models.BooleanField(_("is available"), default=False)
    is_offline = models.BooleanField(_("is offline"), default=False, help_text=_("Signed out: offers are rescinded"))
    ordering = models.PositiveIntegerField(_("ordering"), default=0)

    class Meta:
        verbose_name = _("presence state")
        verbose_name_plural = _("presence states")
        ordering = ["ordering", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """The name for the console: a built-in presence's in the active language, else as entered."""
        return presence_label(self.name)


class Agent(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="agent")
    display_name = models.CharField(_("display name"), max_length=100)
    languages = models.JSONField(_("languages"), default=list, blank=True, help_text=_('e.g. ["ja", "en"]'))
    skills = models.ManyToManyField(
        Skill, verbose_name=_("skills"), through="AgentSkill", blank=True, related_name="agents")
    capacity = models.JSONField(
        _("capacity"), default=default_capacity, help_text=_("Concurrent conversations per channel"))
    presence = models.ForeignKey(
        PresenceState, verbose_name=_("presence"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="agents")
    presence_changed_at = models.DateTimeField(_("presence changed at"), default=timezone.now)
    last_assigned_at = models.DateTimeField(
        _("last assigned at"), null=True, blank=True, help_text=_("For longest-idle ordering"))
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)
    ui_language = models.CharField(_("ui language"), max_length=8, blank=True, choices=settings.LANGUAGES)

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        ordering = ["display_name"]
        indexes = [
            # Routing's idle order (selection._IDLE_ORDER), walked by every decision until enough
            # agents with room are found: a dozen index entries instead of sorting every agent.
            NullsFirstIndex(models.OrderBy(models.F("last_assigned_at"), nulls_first=True),
                            models.F("presence_changed_at"), models.F("id"), name="agent_idle_order_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name

    def capacity_for(self, channel: str) -> int:
        return int(self.capacity.get(channel, DEFAULT_CAPACITY.get(channel, 1)))


class AgentSkill(models.Model):
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), on_delete=models.CASCADE)
    skill = models.ForeignKey(Skill, verbose_name=_("skill"), on_delete=models.CASCADE)
    level = models.PositiveSmallIntegerField(_("level"), default=1)

    class Meta:
        verbose_name = _("agent skill")
        verbose_name_plural = _("agent skills")
        constraints = [models.UniqueConstraint(fields=["agent", "skill"], name="agentskill_unique")]

    def __str__(self) -> str:
        return f"{self.skill} ({self.level})"


class ConversationStatus(models.TextChoices):
    OPEN = "open", _("Open")
    PENDING = "pending", _("Pending")
    SNOOZED = "snoozed", _("Snoozed")
    RESOLVED = "resolved", _("Resolved")


# A conversation in one of these is still being worked on (snoozed ones wake up by themselves).
ACTIVE_STATUSES = (ConversationStatus.OPEN, ConversationStatus.PENDING, ConversationStatus.SNOOZED)


class Conversation(models.Model):
    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.PROTECT, related_name="conversations")
    inbox = models.ForeignKey(Inbox, verbose_name=_("inbox"), on_delete=models.PROTECT, related_name="conversations")
    channel = models.CharField(
        _("channel"), max_length=16, choices=Channel.choices, help_text=_("Copied from the inbox"))
    status = models.CharField(
        _("status"), max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    priority = models.IntegerField(_("priority"), default=0)
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    queue = models.ForeignKey(
        Queue, verbose_name=_("queue"), null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    assignee = models.ForeignKey(
        Agent, verbose_name=_("assignee"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="conversations")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    first_response_at = models.DateTimeField(_("first response at"), null=True, blank=True)
    waiting_since = models.DateTimeField(
        _("waiting since"), null=True, blank=True, help_text=_("First unanswered inbound message"))
    last_message_at = models.DateTimeField(_("last message at"), null=True, blank=True)
    snoozed_until = models.DateTimeField(_("snoozed until"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    # Routing: when it entered the current queue (overflow timer, position, answer time), when an
    # agent took it, and whether the customer left before anyone did (abandoned).
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    assigned_at = models.DateTimeField(_("assigned at"), null=True, blank=True)
    abandoned_at = models.DateTimeField(_("abandoned at"), null=True, blank=True)
    routing_note = models.CharField(
        _("routing note"), max_length=300, blank=True, help_text=_("Why it is where it is (last decision)"))
    # When the periodic tick routes it again if nothing else has: the next time-based change of a
    # waiting conversation (overflow due, the known-agent step ending, its queue opening), or a
    # retry in case a task was lost. Empty: at the next tick.
    route_at = models.DateTimeField(_("route at"), null=True, blank=True)
    queue_reason = models.CharField(
        _("queue reason"),
        max_length=200, blank=True,
        help_text=_("Why it is in its queue: the routing rule that matched, the inbox's or the default queue, "
                    "an overflow or a transfer"))
    # Set when a closed queue's fallback turned this contact into a follow-up: answered later, on
    # follow_up_channel (email when the customer gave an address), and not abandoned by leaving.
    follow_up_at = models.DateTimeField(_("follow up at"), null=True, blank=True)
    follow_up_channel = models.CharField(_("follow up channel"), max_length=16, blank=True)
    # The sequence number of the newest message, note or event in this conversation. Allocated by
    # an UPDATE on this row, so the row lock orders commits: a console that saw sequence n of a
    # conversation has seen every entry up to n, and catches up with "after n" (no gap, no repeat).
    last_seq = models.PositiveBigIntegerField(_("last seq"), default=0, editable=False)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-last_message_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "status"], name="conv_customer_status_idx"),
            models.Index(fields=["inbox", "customer", "status"], name="conv_inbox_customer_idx"),
            # Routing: waiting conversations of a queue by priority, then age.
            models.Index(
                fields=["queue", "-priority", "waiting_since"],
                condition=Q(assignee__isnull=True, status="open"),
                name="conv_waiting_idx",
            ),
            models.Index(fields=["assignee", "status"], name="conv_assignee_status_idx"),
            models.Index(fields=["status", "snoozed_until"], name="conv_snooze_idx"),
            # An agent's load on a channel (what routing counts for every agent it looks at): only
            # the open and pending conversations, however long each agent's history grows.
            models.Index(fields=["assignee", "channel"], condition=Q(status__in=["open", "pending"]),
                         name="conv_agent_load_idx"),
            # Routing's order of waiting conversations (agent_next_work: highest priority, then the
            # longest queued), walked in that order and left after the first few, however long
            # the backlog (bench/routing: the freed agent's first statement sorted all 500).
            models.Index(fields=["-priority", "queued_at", "created_at", "id"],
                         condition=Q(status="open", assignee__isnull=True, abandoned_at__isnull=True),
                         name="conv_routing_order_idx"),
            # The customer's latest assignment, read by every routing decision (the known-agent
            # step): one index entry, whatever the statistics say about assigned conversations.
            models.Index(fields=["customer", "-assigned_at", "-id"],
                         condition=Q(assignee__isnull=False, assigned_at__isnull=False),
                         name="conv_customer_assigned_idx"),
            # The tick's due waiting conversations (route_waiting), however many wait for later.
            models.Index(fields=["route_at"], condition=Q(status="open", assignee__isnull=True, abandoned_at__isnull=True),
                         name="conv_route_due_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_channel_display()} · {self.customer}"

    def save(self, *args, **kwargs):
        # ``last_seq`` is only ever moved by ``next_message_seq``'s UPDATE; a full save of a stale
        # instance (admin, shell) must not move it back and hand out a sequence number twice.
        if self.pk is not None and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name != "last_seq"
            ]
        super().save(*args, **kwargs)


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
    CONSENT_CHANGED = "consent_changed", _("Consent changed")


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


def attachment_path(instance: "Attachment", filename: str) -> str:
    return f"attachments/{timezone.now():%Y/%m}/{instance.message_id or 'new'}/{filename}"


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


class OfferStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")
    TIMEOUT = "timeout", _("Timed out")
    CANCELED = "canceled", _("Canceled")
    RESCINDED = "rescinded", _("Rescinded")


class Offer(models.Model):
    """A reservation: one conversation offered to one agent (TaskRouter's reservation)."""

    conversation = models.ForeignKey(
        Conversation, verbose_name=_("conversation"), on_delete=models.CASCADE, related_name="offers")
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), on_delete=models.CASCADE, related_name="offers")
    queue = models.ForeignKey(
        Queue, verbose_name=_("queue"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    step = models.CharField(_("step"), max_length=16, help_text=_("known_agent, queue or manual"))
    status = models.CharField(_("status"), max_length=16, choices=OfferStatus.choices, default=OfferStatus.PENDING)
    explanation = models.JSONField(
        _("explanation"), default=dict, blank=True, help_text=_("Rule matched, step, candidates considered"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    class Meta:
        verbose_name = _("offer")
        verbose_name_plural = _("offers")
        ordering = ["-created_at", "-id"]
        constraints = [
            # The database, not the router, guarantees a conversation is never offered twice at once.
            models.UniqueConstraint(
                fields=["conversation"], condition=Q(status="pending"), name="offer_one_pending_per_conversation"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="offer_due_idx"),
            # An agent's pending offers on a channel (their load, counted by every routing
            # decision for every agent it looks at). Partial: pending offers are few, closed ones
            # pile up. Without it PostgreSQL read every pending offer per agent through the
            # one-pending-per-conversation index once it had statistics (bench/routing).
            models.Index(fields=["agent", "channel"], condition=Q(status="pending"), name="offer_pending_load_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.conversation_id} → {self.agent} ({self.status})"


class CannedResponse(models.Model):
    """A saved reply an agent inserts by its shortcode; ``{customer_name}``, ``{customer_first_name}``
    and ``{agent_name}`` are filled in for the conversation at hand."""

    shortcode = models.SlugField(
        _("shortcode"), max_length=40, unique=True, help_text=_("Typed after “/” in the composer"))
    title = models.CharField(_("title"), max_length=100)
    text = models.TextField(_("text"), help_text=_("Variables: {customer_name}, {customer_first_name}, {agent_name}"))
    language = models.CharField(_("language"), max_length=8, blank=True, choices=settings.LANGUAGES)
    is_active = models.BooleanField(_("is active"), default=True)

    class Meta:
        verbose_name = _("canned response")
        verbose_name_plural = _("canned responses")
        ordering = ["shortcode"]

    def __str__(self) -> str:
        return f"/{self.shortcode}"


class WrapUpCode(models.Model):
    """Why a conversation ended (billing question, order status …); queues may require one."""

    code = models.SlugField(_("code"), max_length=64, unique=True)
    label = models.CharField(_("label"), max_length=100)
    label_translations = models.JSONField(
        _("label translations"), default=dict, blank=True,
        help_text=_('The label in other languages of the console, e.g. {"ja": "注文状況"}'))
    is_active = models.BooleanField(_("is active"), default=True)
    ordering = models.PositiveIntegerField(_("ordering"), default=0)

    class Meta:
        verbose_name = _("wrap up code")
        verbose_name_plural = _("wrap up codes")
        ordering = ["ordering", "label"]

    def __str__(self) -> str:
        return self.label

    def label_in(self, language: str | None) -> str:
        """The label in ``language`` (``ja``, ``ja-jp`` …) if one was given, else ``label``."""
        translations = self.label_translations if isinstance(self.label_translations, dict) else {}
        base = (language or "").lower().split("-")[0]
        return str(translations.get(base) or self.label)

    @property
    def display_label(self) -> str:
        """The label in the active language (the agent's, set by the console's middleware)."""
        return self.label_in(get_language())


class ConversationRead(models.Model):
    """How far an agent has read a conversation (unread counts in the console)."""

    agent = models.ForeignKey(Agent, verbose_name=_("agent"), on_delete=models.CASCADE, related_name="reads")
    conversation = models.ForeignKey(
        Conversation, verbose_name=_("conversation"), on_delete=models.CASCADE, related_name="reads")
    last_read_seq = models.PositiveBigIntegerField(_("last read seq"), default=0)
    read_at = models.DateTimeField(_("read at"), default=timezone.now)

    class Meta:
        verbose_name = _("conversation read")
        verbose_name_plural = _("conversation reads")
        constraints = [models.UniqueConstraint(fields=["agent", "conversation"], name="read_unique_agent_conversation")]


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
