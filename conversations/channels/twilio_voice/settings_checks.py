"""The admin's check of a voice inbox's settings, registered for the voice channel
(``inbox_settings.register_settings_check``): the IVR, with its queues looked up."""

from ...models import Queue
from .ivr import ivr_settings_problems


def voice_settings_problems(settings) -> list[str]:
    slugs = frozenset(Queue.objects.filter(is_active=True).values_list("slug", flat=True))
    return ivr_settings_problems(settings, queue_slugs=slugs)
