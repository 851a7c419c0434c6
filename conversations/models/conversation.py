"""Conversations, the offers made for them, and how far each agent has read them.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from profiles.models import Customer

from .agents import Agent
from .inboxes import Channel, Inbox
from .queues import Queue


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
    # The first acceptance since it entered its current queue (``queued_at``): what its wait and
    # the service level are measured to. A reassignment or a transfer to an agent moves
    # ``assigned_at`` (since when its agent has it) but not this; entering a queue again starts a
    # new wait, answered by the next acceptance (``accepted``).
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
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

    def accepted(self, at) -> list[str]:
        """An agent takes it at ``at`` (not saved): ``assigned_at`` always, ``answered_at`` only
        when no acceptance answered its current wait yet. Returns the fields for the save."""
        self.assigned_at = at
        if self.queued_at is not None and (self.answered_at is None or self.answered_at < self.queued_at):
            self.answered_at = at
        return ["assigned_at", "answered_at"]

    def save(self, *args, **kwargs):
        # ``last_seq`` is only ever moved by ``next_message_seq``'s UPDATE; a full save of a stale
        # instance (admin, shell) must not move it back and hand out a sequence number twice.
        if self.pk is not None and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name != "last_seq"
            ]
        super().save(*args, **kwargs)


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
