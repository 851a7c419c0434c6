"""Filters of the wallboard's templates."""

from functools import lru_cache

from django import template
from django.utils.translation import get_language
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """``seconds`` as ``m:ss`` or ``h:mm:ss`` (the page's script keeps them ticking); "–" if none."""
    if seconds is None or seconds == "":
        return "–"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def percent(value) -> str:
    return "–" if value is None else f"{value:g}%"


@lru_cache(maxsize=16)
def _channel_labels(language: str) -> dict[str, str]:
    from conversations.models import Channel

    return {value: str(label) for value, label in Channel.choices}


@register.filter
def channel_label(value: str) -> str:
    """The channel's name in the active language (the board names each channel many times)."""
    return _channel_labels(get_language() or "").get(value, value)


@register.filter
def customer_name(entry: dict) -> str:
    """The customer's name, or for one we know no name of (a phone number texting in) their id."""
    return entry["customer"] or _("Customer #%(id)s") % {"id": entry["customer_id"]}


@register.filter
def presence_label(name: str) -> str:
    from conversations.models.agents import presence_label as label

    return label(name) if name else _("No presence")
