"""The agent's choice of where calls ring: the console's softphone or their own phone."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from profiles.addresses import normalize_phone

from ....models import Agent, VoiceAnswerOn


def agent_phone_clean(raw: str) -> str:
    """E.164 of a number an agent typed, checked strictly (``CC_DEFAULT_REGION`` for national
    numbers: ``090-1234-5678`` → ``+819012345678``); empty stays empty."""
    raw = (raw or "").strip()
    return normalize_phone(raw, strict=True) if raw else ""


def agent_voice_settings_clean(answer_on: str, phone: str) -> tuple[str, str]:
    if answer_on not in VoiceAnswerOn.values:
        raise ValidationError(_("Choose where your calls ring."), code="answer_on")
    phone = agent_phone_clean(phone)
    if answer_on == VoiceAnswerOn.PHONE and not phone:
        raise ValidationError(_("Give the phone number your calls should ring on."), code="phone_required")
    return answer_on, phone


def agent_voice_settings_update(*, agent: Agent, answer_on: str, phone: str) -> Agent:
    answer_on, phone = agent_voice_settings_clean(answer_on, phone)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        agent.voice_answer_on, agent.voice_phone_number = answer_on, phone
        agent.save(update_fields=["voice_answer_on", "voice_phone_number"])
    return agent
