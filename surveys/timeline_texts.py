"""How the surveys' events read on the timeline, in the viewer's language: why a survey was not
sent, how it went out, the answer (with its comment, and a change made on the link page).

Registered with ``conversations.event_texts`` (``SurveysConfig.ready``): the console renders them
while showing the timeline, so an agent reading Japanese sees Japanese whatever process wrote the
event. The stored ``text`` of these events stays English, for anything that reads rows raw. These
functions read only the event's data.
"""

from django.utils.translation import gettext as _
from django.utils.translation import override

from conversations.models import Channel, EventType

from .models import SkipReason, scale_of


def _kind(data: dict) -> str:
    return str(data.get("kind", "")).upper()


def _label(choices, value) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return str(value or "")


def _mode(mode: str) -> str:
    return {
        "reply": _("question with a reply scale"),
        "link": _("link to the survey page"),
        "email": _("one-click score links"),
        "card": _("rating card in the chat"),
        "template": _("approved WhatsApp template"),
        "keypad": _("keypad survey after the call"),
    }.get(mode, mode)


def sent_text(data: dict) -> str:
    return _("%(kind)s by %(channel)s, %(mode)s") % {
        "kind": _kind(data), "channel": _label(Channel, data.get("channel")), "mode": _mode(str(data.get("mode", "")))}


def skipped_text(data: dict) -> str:
    reason = data.get("reason") or ""
    text = _label(SkipReason, reason)
    detail = str(data.get("detail") or "")
    # The channel's own words only where the reason alone does not say what happened.
    if detail and reason in (SkipReason.SEND_REFUSED, ""):
        text = f"{text}: {detail}" if text else detail
    return text


def answered_text(data: dict) -> str:
    try:
        high = scale_of(data.get("kind"))[1]
    except ValueError:
        high = "?"
    text = _("%(kind)s %(score)s of %(high)s") % {"kind": _kind(data), "score": data.get("score", ""), "high": high}
    if data.get("changed_from") is not None:
        text += " " + _("(changed from %(score)s)") % {"score": data["changed_from"]}
    if data.get("comment"):
        text += f" — “{data['comment']}”"
    return text


TEXTS = {EventType.SURVEY_SENT: sent_text, EventType.SURVEY_SKIPPED: skipped_text,
         EventType.SURVEY_ANSWERED: answered_text}


def stored_text(event_type: str, data: dict) -> str:
    """The English text kept in the event's row."""
    with override("en"):
        return TEXTS[event_type](data)

