"""Queues and what configures them: skills, routing rules, canned responses, wrap-up codes.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from ..routing.hours import validate_config
from ..routing.rules import compile_rule
from .inboxes import Channel


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
    # Calls: after a call ends its conversation stays with the agent in wrap-up (holding their voice
    # capacity) until they resolve it, or until this many seconds have passed (0: no limit).
    wrap_up_limit_seconds = models.PositiveIntegerField(
        _("wrap-up limit seconds"), default=0,
        help_text=_("After a call, resolve it by itself once the agent's wrap-up took this long (0: never)"))
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
