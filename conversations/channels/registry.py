"""Which adapter sends on which channel. Adapters expose ``send(message, *, to, from_)`` and may
expose ``find_sent(message, *, to, from_, since)`` for reconciliation after an ambiguous failure."""

from types import ModuleType

from ..models import Channel


def adapter_for(channel: str) -> ModuleType | None:
    if channel in (Channel.SMS, Channel.WHATSAPP):
        from . import twilio_messaging

        return twilio_messaging
    if channel == Channel.WEBCHAT:
        from . import webchat

        return webchat
    if channel == Channel.EMAIL:
        from . import email

        return email
    return None
