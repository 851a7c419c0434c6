"""Agents, their presence and skills.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contactcenter.indexes import NullsFirstIndex

from .field_callables import DEFAULT_CAPACITY, default_capacity
from .queues import Skill

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


class VoiceAnswerOn(models.TextChoices):
    """Where an agent takes their calls: the console's softphone, or their own phone (a conference participant dialled there)."""

    BROWSER = "browser", _("In the browser")
    PHONE = "phone", _("On my phone")


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
    voice_answer_on = models.CharField(
        _("answer calls"), max_length=8, choices=VoiceAnswerOn.choices, default=VoiceAnswerOn.BROWSER)
    # E.164, checked strictly (phonenumbers, CC_DEFAULT_REGION) by the softphone's profile form and the admin.
    voice_phone_number = models.CharField(
        _("phone number for calls"), max_length=20, blank=True,
        help_text=_("Calls ring here when the agent answers on their phone"))

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
