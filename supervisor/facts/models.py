"""What the reports read: one row of facts per conversation, and every presence change of an agent.

``ConversationFact`` is derived from the conversation's timeline (its messages and system events)
by ``supervisor.facts.derive``; ``source_seq`` is the conversation's ``last_seq`` it was derived
from, so a row is stale exactly when the conversation has a newer timeline entry (the tick's dirty
marker). Reports never scan messages: every figure is an aggregate over this table.
"""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models import Agent, Conversation, Inbox, PresenceState, Queue
from profiles.models import Customer


class ConversationFact(models.Model):
    conversation = models.OneToOneField(
        Conversation, verbose_name=_("conversation"), primary_key=True, on_delete=models.CASCADE,
        related_name="fact")
    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(_("channel"), max_length=16)
    inbox = models.ForeignKey(Inbox, verbose_name=_("inbox"), on_delete=models.CASCADE, related_name="+")
    queue = models.ForeignKey(Queue, verbose_name=_("queue"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    # Who handled it: the assignee of the last acceptance or transfer to an agent.
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    # Reports put a conversation on the day (contact-center time zone) it started.
    started_at = models.DateTimeField(_("started at"))
    # Null for a conversation an agent opened (outbound): never offered to a queue.
    entered_queue_at = models.DateTimeField(_("entered queue at"), null=True, blank=True)
    first_offered_at = models.DateTimeField(_("first offered at"), null=True, blank=True)
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)
    wait_seconds = models.PositiveIntegerField(_("wait seconds"), null=True, blank=True,
                                               help_text=_("Queue entry to acceptance"))
    sla_seconds = models.PositiveIntegerField(_("SLA seconds"), null=True, blank=True,
                                              help_text=_("The queue's SLA when the facts were derived"))
    answered_within_sla = models.BooleanField(_("answered within SLA"), default=False)
    first_customer_message_at = models.DateTimeField(_("first customer message at"), null=True, blank=True)
    first_agent_reply_at = models.DateTimeField(_("first agent reply at"), null=True, blank=True)
    # The agent who sent the first reply (not whoever had the conversation last, after a transfer).
    first_reply_agent = models.ForeignKey(
        Agent, verbose_name=_("first reply agent"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    first_response_seconds = models.PositiveIntegerField(_("first response seconds"), null=True, blank=True)
    transfers = models.PositiveIntegerField(_("transfers"), default=0)
    first_resolved_at = models.DateTimeField(_("first resolved at"), null=True, blank=True)
    # The last resolution, while the conversation stays resolved (null once reopened).
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    reopened = models.PositiveIntegerField(_("reopened"), default=0)
    abandoned_at = models.DateTimeField(_("abandoned at"), null=True, blank=True)
    abandoned_short = models.BooleanField(
        _("short abandon"), default=False, help_text=_("Left within CC_SHORT_ABANDON_SECONDS of entering the queue"))
    handle_seconds = models.PositiveIntegerField(_("handle seconds"), null=True, blank=True,
                                                 help_text=_("Accepted to resolved, wrap-up included"))
    # From the surveys app's request and answer for this contact (read as the facts are derived):
    # when the survey went out, the score of its kind, and when it was answered.
    survey_sent_at = models.DateTimeField(_("survey sent at"), null=True, blank=True)
    csat_score = models.PositiveSmallIntegerField(_("CSAT score"), null=True, blank=True)
    nps_score = models.PositiveSmallIntegerField(_("NPS score"), null=True, blank=True)
    ces_score = models.PositiveSmallIntegerField(_("CES score"), null=True, blank=True)
    survey_answered_at = models.DateTimeField(_("survey answered at"), null=True, blank=True)
    source_seq = models.PositiveBigIntegerField(_("source seq"), default=0)
    derived_at = models.DateTimeField(_("derived at"), default=timezone.now)

    class Meta:
        verbose_name = _("conversation fact")
        verbose_name_plural = _("conversation facts")
        indexes = [
            models.Index(fields=["started_at"], name="fact_started_idx"),
            models.Index(fields=["agent", "started_at"], name="fact_agent_started_idx"),
            # First-contact resolution: did the customer write again after a resolution?
            models.Index(fields=["customer", "first_customer_message_at"], name="fact_customer_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"facts of #{self.conversation_id}"


class PresenceChangeSource(models.TextChoices):
    """Who made a presence change."""

    AGENT = "agent", _("the agent")
    SUPERVISOR = "supervisor", _("a supervisor")
    SYSTEM = "system", _("the system")
    ADMIN = "admin", _("the admin")


class AgentPresenceChange(models.Model):
    """An agent entered a presence at ``changed_at``, and who made the change (recorded from
    ``lifecycle.presence_changed`` and, for saves outside the routing services such as the admin's,
    the agent row's save: the core keeps only the current presence and ``presence_changed_at``)."""

    agent = models.ForeignKey(Agent, verbose_name=_("agent"), on_delete=models.CASCADE, related_name="+")
    presence = models.ForeignKey(PresenceState, verbose_name=_("presence"), null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(_("name"), max_length=50, blank=True)
    is_available = models.BooleanField(_("is available"), default=False)
    is_offline = models.BooleanField(_("is offline"), default=False)
    changed_at = models.DateTimeField(_("changed at"))
    # Empty: recorded before who made changes was kept.
    source = models.CharField(_("made by"), max_length=16, choices=PresenceChangeSource.choices, blank=True)
    # Why, as the core says it ("agent", "signed_out", "supervisor", "missed_offer", "disconnected" …).
    reason = models.CharField(_("reason"), max_length=32, blank=True)
    # Who, when a person other than the agent made it (a supervisor).
    changed_by = models.ForeignKey(Agent, verbose_name=_("changed by"), null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = _("agent presence change")
        verbose_name_plural = _("agent presence changes")
        ordering = ["agent", "changed_at", "id"]
        constraints = [
            # The same change seen twice (a save repeated with the same timestamp) is one row.
            models.UniqueConstraint(fields=["agent", "changed_at"], name="presence_change_unique_agent_at"),
        ]
        indexes = [models.Index(fields=["changed_at"], name="presence_change_at_idx")]

    def __str__(self) -> str:
        return f"{self.agent_id} → {self.name} at {self.changed_at:%Y-%m-%d %H:%M}"
