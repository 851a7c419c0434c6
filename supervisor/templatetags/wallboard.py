"""Filters of the wallboard's templates."""

from django import template
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


@register.filter
def channel_label(value: str) -> str:
    from conversations.models import Channel

    return str(dict(Channel.choices).get(value, value))


@register.filter
def presence_label(name: str) -> str:
    from conversations.models.agents import presence_label as label

    return label(name) if name else _("No presence")
