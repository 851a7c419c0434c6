"""Phone calls: the Twilio call behind a voice conversation (twilio.md §3).

A voice contact is a ``Conversation`` with channel "voice" on an Inbox of kind "voice", like any
other contact; this row keeps what only a call has: Twilio's CallSid (unique, so a retried
webhook never opens a second conversation), its status, what the caller chose in the IVR, when
it was queued, answered and ended, who answered, a callback the caller asked for, and the
voicemail recording. Pure: imports only Django and sibling models.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .agents import Agent
from .conversation import Conversation


class CallDirection(models.TextChoices):
    INBOUND = "inbound", _("Inbound")
    OUTBOUND = "outbound", _("Outbound")


class CallStatus(models.TextChoices):
    """Twilio's CallStatus values (twilio.md §3)."""

    QUEUED = "queued", _("Queued")
    RINGING = "ringing", _("Ringing")
    IN_PROGRESS = "in-progress", _("In progress")
    COMPLETED = "completed", _("Completed")
    BUSY = "busy", _("Busy")
    FAILED = "failed", _("Failed")
    NO_ANSWER = "no-answer", _("No answer")
    CANCELED = "canceled", _("Canceled")


# Statuses after which Twilio sends nothing more about the call.
CALL_FINAL_STATUSES = (CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.FAILED, CallStatus.NO_ANSWER,
                       CallStatus.CANCELED)


class CallOutcome(models.TextChoices):
    """How the caller's side ended (empty while the call is live)."""

    NONE = "", _("In progress")
    ANSWERED = "answered", _("Answered by an agent")
    VOICEMAIL = "voicemail", _("Left a voicemail")
    CALLBACK = "callback", _("Asked to be called back")
    ABANDONED = "abandoned", _("Hung up while waiting")
    IVR_HANGUP = "ivr_hangup", _("Hung up in the menu")


class Call(models.Model):
    conversation = models.ForeignKey(
        Conversation, verbose_name=_("conversation"), on_delete=models.CASCADE, related_name="calls")
    call_sid = models.CharField(_("call sid"), max_length=64, unique=True)
    direction = models.CharField(_("direction"), max_length=16, choices=CallDirection.choices,
                                 default=CallDirection.INBOUND)
    from_address = models.CharField(_("from"), max_length=64, blank=True,
                                    help_text=_("As Twilio sent it (empty or 'anonymous' when withheld)"))
    to_address = models.CharField(_("to"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=CallStatus.choices, default=CallStatus.RINGING)
    # The caller's language for every prompt (ja or en: the IVR's 9 switches to English).
    language = models.CharField(_("language"), max_length=8, default="ja")
    # What the caller chose: {"option": "billing", "digits": "2", "speech": "", "queue": 3, "steps": […]}.
    ivr = models.JSONField(_("IVR choices"), default=dict, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=CallOutcome.choices, blank=True, default="")
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    duration = models.PositiveIntegerField(_("duration (s)"), null=True, blank=True)
    agent = models.ForeignKey(Agent, verbose_name=_("agent"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="calls")
    # The agent's leg (their conference participant's call) once it answered.
    agent_call_sid = models.CharField(_("agent call sid"), max_length=64, blank=True)
    # The assignment (its ``assigned_at``) this call was put through for: the claim that makes the
    # put-through happen once per assignment, whichever of the agent's Answer and the assignment's
    # task comes first (both may run, and Twilio must not get the redirect twice).
    connected_for = models.DateTimeField(_("put through for the assignment of"), null=True, blank=True)
    # Virtual hold: the caller hung up keeping their place; the agent who takes the offer calls back.
    callback_requested = models.BooleanField(_("callback requested"), default=False)
    callback_requested_at = models.DateTimeField(_("callback requested at"), null=True, blank=True)
    callback_number = models.CharField(_("callback number"), max_length=64, blank=True)
    callback_call_sid = models.CharField(_("callback call sid"), max_length=64, blank=True)
    # The voicemail (or call) recording; its audio is fetched into an Attachment of a timeline
    # message, so no page ever shows Twilio's URL.
    recording_sid = models.CharField(_("recording sid"), max_length=64, blank=True)
    recording_duration = models.PositiveIntegerField(_("recording duration (s)"), null=True, blank=True)
    transcript = models.TextField(_("transcript"), blank=True)
    transcript_status = models.CharField(_("transcript status"), max_length=16, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["conversation", "-started_at"], name="call_conversation_idx"),
            models.Index(fields=["callback_call_sid"], condition=~Q(callback_call_sid=""), name="call_callback_sid_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.call_sid} {self.from_address} → {self.to_address} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status not in CALL_FINAL_STATUSES
