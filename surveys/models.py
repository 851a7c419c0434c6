"""Post-contact surveys: what to ask (definitions), when not to ask (the fatigue policy), each
survey owed to a conversation (requests, the database being the truth of what is due, sent,
answered) and the answers, with the follow-up an unhappy answer opens.
"""

from datetime import time

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models import Agent, Channel, Conversation, Inbox, Message, Queue
from profiles.models import Customer


class SurveyKind(models.TextChoices):
    CSAT = "csat", _("CSAT (1–5)")
    NPS = "nps", _("NPS (0–10)")
    CES = "ces", _("CES (1–7)")


# Each kind's scale, lowest to highest (CES: 7 is "very easy").
SCALES = {SurveyKind.CSAT: (1, 5), SurveyKind.NPS: (0, 10), SurveyKind.CES: (1, 7)}


def scale_of(kind: str) -> tuple[int, int]:
    return SCALES[SurveyKind(kind)]


class SurveyDefinition(models.Model):
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("type"), max_length=8, choices=SurveyKind.choices, default=SurveyKind.CSAT)
    question_en = models.CharField(_("question (English)"), max_length=300)
    question_ja = models.CharField(_("question (Japanese)"), max_length=300, blank=True)
    follow_up_en = models.CharField(_('"why?" follow-up (English)'), max_length=300, blank=True)
    follow_up_ja = models.CharField(_('"why?" follow-up (Japanese)'), max_length=300, blank=True)
    delay_seconds = models.PositiveIntegerField(
        _("delay after resolve (seconds)"), default=600, validators=[MaxValueValidator(7 * 24 * 3600)])
    queues = models.ManyToManyField(
        Queue, verbose_name=_("queues"), blank=True, related_name="+",
        help_text=_("Conversations resolved in these queues get this survey. Neither queues nor inboxes: every "
                    "conversation without a more specific survey."))
    inboxes = models.ManyToManyField(Inbox, verbose_name=_("inboxes"), blank=True, related_name="+")
    sampling_percent = models.PositiveSmallIntegerField(
        _("sampling rate (%)"), default=100, validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text=_("Share of eligible contacts that get the survey"))
    is_active = models.BooleanField(_("is active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("survey definition")
        verbose_name_plural = _("survey definitions")
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def clean(self):
        errors = {}
        if not (self.question_en or "").strip():
            errors["question_en"] = _("The English question is required (the fallback language).")
        if self.pk is not None:
            kind_before = SurveyDefinition.objects.filter(pk=self.pk).values_list("kind", flat=True).first()
            if kind_before and kind_before != self.kind and self.requests.exists():
                # Its surveys out there were asked on the old scale: their answers would be read on the new one.
                errors["kind"] = _("This survey was already scheduled or sent: its type cannot change. Make a new "
                                   "survey for the new type and deactivate this one.")
        if errors:
            raise ValidationError(errors)

    def question_in(self, language: str) -> str:
        return (self.question_ja if language == "ja" and self.question_ja else self.question_en).strip()

    def follow_up_in(self, language: str) -> str:
        return (self.follow_up_ja if language == "ja" and self.follow_up_ja else self.follow_up_en).strip()


class SurveyPolicy(models.Model):
    """The fatigue policy and the closed loop: one row (``SurveyPolicy.current()``)."""

    days_between = models.PositiveIntegerField(
        _("days between surveys"), default=30,
        help_text=_("At most one survey per customer in this many days, across all channels"))
    quiet_start = models.TimeField(_("quiet hours start"), default=time(20, 0))
    quiet_end = models.TimeField(_("quiet hours end"), default=time(9, 0))
    answer_window_hours = models.PositiveIntegerField(_("answer window (hours)"), default=48,
                                                      validators=[MinValueValidator(1)])
    comment_window_minutes = models.PositiveIntegerField(
        _('"why?" reply window (minutes)'), default=60, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text=_('After a score given by text reply, the survey\'s "why?" question is sent; the customer\'s next '
                    "message within this many minutes is kept as the survey's comment (on the timeline, without "
                    "reopening anything). Later messages are ordinary messages."))
    follow_up_queue = models.ForeignKey(
        Queue, verbose_name=_("follow-up queue"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text=_("Where an unhappy answer opens a follow-up (e.g. Customer care); its wrap-up codes are the "
                    "outcomes asked when the follow-up is resolved. Empty: the queue that handled the contact."))
    follow_up_priority = models.IntegerField(_("follow-up priority"), default=10)
    csat_detractor_max = models.PositiveSmallIntegerField(_("CSAT detractor at or below"), default=2)
    nps_detractor_max = models.PositiveSmallIntegerField(_("NPS detractor at or below"), default=6)
    ces_detractor_max = models.PositiveSmallIntegerField(_("CES detractor at or below"), default=3)

    class Meta:
        verbose_name = _("survey policy")
        verbose_name_plural = _("survey policy")

    def __str__(self) -> str:
        return str(_("Survey policy"))

    @classmethod
    def current(cls) -> "SurveyPolicy":
        policy = cls.objects.order_by("pk").first()
        return policy if policy is not None else cls()

    def clean(self):
        errors = {}
        for field, kind in (("csat_detractor_max", SurveyKind.CSAT), ("nps_detractor_max", SurveyKind.NPS),
                            ("ces_detractor_max", SurveyKind.CES)):
            low, high = scale_of(kind)
            if not low <= (getattr(self, field) or 0) < high:
                errors[field] = _("Between %(low)s and %(high)s.") % {"low": low, "high": high - 1}
        if self.quiet_start == self.quiet_end:
            errors["quiet_end"] = _("Quiet hours need a different start and end.")
        if self.follow_up_queue is not None and not self.follow_up_queue.wrap_up_required:
            errors["follow_up_queue"] = _(
                "The follow-up queue must require a wrap-up code: the outcome (called back, refunded, no action…).")
        if errors:
            raise ValidationError(errors)

    def detractor_max(self, kind: str) -> int:
        return {SurveyKind.CSAT: self.csat_detractor_max, SurveyKind.NPS: self.nps_detractor_max,
                SurveyKind.CES: self.ces_detractor_max}[SurveyKind(kind)]


class SurveyStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    SENT = "sent", _("Sent")
    SKIPPED = "skipped", _("Skipped")
    CANCELED = "canceled", _("Canceled")
    ANSWERED = "answered", _("Answered")
    EXPIRED = "expired", _("Expired")


class SkipReason(models.TextChoices):
    NO_AGENT_REPLY = "no_agent_reply", _("No agent replied in the conversation")
    RECENTLY_SURVEYED = "recently_surveyed", _("Surveyed recently (fatigue policy)")
    OPTED_OUT = "opted_out", _("The customer opted out of the channel")
    ANOTHER_OPEN = "another_open", _("Another conversation of the customer is open")
    NOT_SAMPLED = "not_sampled", _("Not in the sample")
    FOLLOW_UP = "follow_up", _("A survey follow-up is not surveyed")
    WHATSAPP_WINDOW = "whatsapp_window", _("Outside WhatsApp's 24 hours and no approved survey template")
    NO_ADDRESS = "no_address", _("No way to reach the customer")
    SEND_REFUSED = "send_refused", _("The channel refused the message")


class SurveyRequest(models.Model):
    """The survey owed to one conversation: at most one (the constraint makes a repeated resolve
    or hook do nothing)."""

    conversation = models.OneToOneField(
        Conversation, verbose_name=_("conversation"), on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    definition = models.ForeignKey(SurveyDefinition, verbose_name=_("survey"), on_delete=models.PROTECT,
                                   related_name="requests")
    # Copied at resolve time: the reports count by who and where the contact was handled.
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    queue = models.ForeignKey(Queue, verbose_name=_("queue"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    status = models.CharField(_("status"), max_length=16, choices=SurveyStatus.choices, default=SurveyStatus.SCHEDULED)
    skip_reason = models.CharField(_("skip reason"), max_length=32, choices=SkipReason.choices, blank=True)
    skip_detail = models.CharField(_("skip detail"), max_length=300, blank=True)
    due_at = models.DateTimeField(_("due at"))
    token = models.CharField(_("token"), max_length=64, unique=True)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    sent_channel = models.CharField(_("sent on"), max_length=16, blank=True, choices=Channel.choices)
    # Where it went: the conversation itself, or for a voice contact its SMS or email conversation.
    sent_conversation = models.ForeignKey(
        Conversation, verbose_name=_("sent in"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sent_mode = models.CharField(_("sent as"), max_length=16, blank=True, help_text=_("reply, link, email, card"))
    # The "why?" question after a score given by text reply: when it became owed (in the answer's
    # transaction) and the message that asked it (set when it is sent; the comment window runs
    # from that message). Owed and not asked: its sending was lost, and the tick queues it again.
    comment_asked_at = models.DateTimeField(_('"why?" owed since'), null=True, blank=True)
    comment_ask_message = models.ForeignKey(
        Message, verbose_name=_('"why?" question'), null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("survey request")
        verbose_name_plural = _("survey requests")
        ordering = ["-due_at", "-id"]
        indexes = [
            # The tick's due work, however many are sent, skipped or answered.
            models.Index(fields=["due_at", "id"], condition=Q(status="scheduled", claimed_at__isnull=True),
                         name="survey_due_idx"),
            models.Index(fields=["customer", "status", "sent_at"], name="survey_customer_idx"),
            # The tick's lost "why?" questions: a handful at most.
            models.Index(fields=["comment_asked_at"], name="survey_why_owed_idx",
                         condition=Q(comment_asked_at__isnull=False, comment_ask_message__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.definition.kind.upper()} #{self.conversation_id} ({self.get_status_display()})"


class SurveyResponse(models.Model):
    request = models.OneToOneField(SurveyRequest, verbose_name=_("survey request"), on_delete=models.CASCADE,
                                   related_name="response")
    kind = models.CharField(_("type"), max_length=8, choices=SurveyKind.choices)
    score = models.SmallIntegerField(_("score"))
    comment = models.TextField(_("comment"), blank=True)
    via = models.CharField(_("answered via"), max_length=16, help_text=_("reply, link or widget"))
    # Copies for the reports and the API's filters (no join through the request).
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    conversation = models.ForeignKey(Conversation, verbose_name=_("conversation"), on_delete=models.CASCADE,
                                     related_name="+")
    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    queue = models.ForeignKey(Queue, verbose_name=_("queue"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    answered_at = models.DateTimeField(_("answered at"), default=timezone.now)
    changed_at = models.DateTimeField(_("changed at"), null=True, blank=True)
    previous_score = models.SmallIntegerField(_("previous score"), null=True, blank=True)

    class Meta:
        verbose_name = _("survey response")
        verbose_name_plural = _("survey responses")
        ordering = ["-answered_at", "-id"]
        indexes = [models.Index(fields=["kind", "answered_at"], name="survey_response_kind_idx")]

    def __str__(self) -> str:
        return f"{self.kind.upper()} {self.score} · #{self.conversation_id}"


class SurveyFollowUp(models.Model):
    """The conversation an unhappy answer opened (one per answer); never surveyed itself."""

    response = models.OneToOneField(SurveyResponse, verbose_name=_("survey response"), on_delete=models.CASCADE,
                                    related_name="follow_up")
    conversation = models.OneToOneField(Conversation, verbose_name=_("follow-up conversation"),
                                        on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("survey follow-up")
        verbose_name_plural = _("survey follow-ups")

    def __str__(self) -> str:
        return f"#{self.conversation_id} ← {self.response}"
