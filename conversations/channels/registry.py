"""Which adapter serves which channel, by dotted path (healthchecks' ``TRANSPORTS``).

The core (models, services, selectors, routing) never imports a channel's folder: it asks this
registry, which imports the adapter the first time it is needed. Adapters may import the core.
An adapter module exposes ``send(message, *, to, from_)`` and may expose
``find_sent(message, *, to, from_, since)`` (reconciliation after an ambiguous failure),
``validate_outbound(text)`` (raises ``ValidationError`` for a body the channel cannot carry) and
``conversation_assigned(conversation, agent)`` (tell the customer's side an agent took it).
This module imports nothing of ours, so anything may use it.
"""

from functools import cache
from importlib import import_module
from types import ModuleType

ADAPTERS: dict[str, str] = {
    "sms": "conversations.channels.twilio_messaging.adapter",
    "whatsapp": "conversations.channels.twilio_messaging.adapter",
    "email": "conversations.channels.email.adapter",
    "webchat": "conversations.channels.webchat.adapter",
    "voice": "conversations.channels.twilio_voice.adapter",
}


# Each channel's folder. Its ``ready()`` (in ``__init__.py``, when it has one) wires the channel in
# when the app starts (tick jobs); its ``tasks`` module, when it has one, is registered with Celery.
CHANNEL_PACKAGES: tuple[str, ...] = (
    "conversations.channels.email",
    "conversations.channels.twilio_messaging",
    "conversations.channels.twilio_voice",
    "conversations.channels.webchat",
    "conversations.channels.twilio_voice.softphone",
)


def channels_ready() -> None:
    for path in CHANNEL_PACKAGES:
        ready = getattr(import_module(path), "ready", None)
        if ready is not None:
            ready()


@cache
def adapter_for(channel: str) -> ModuleType | None:
    path = ADAPTERS.get(str(channel))
    return import_module(path) if path else None


def validate_outbound(channel: str, text: str) -> None:
    """Raise ``ValidationError`` when ``channel`` cannot carry ``text`` (e.g. SMS's length limit)."""
    adapter = adapter_for(channel)
    check = getattr(adapter, "validate_outbound", None)
    if check is not None:
        check(text)


def channel_conversation_assigned(conversation, agent) -> None:
    """Let the conversation's channel tell the customer an agent took it (the widget says
    "<agent> joined"); a channel without such a hook says nothing. Caller is in the transaction:
    the hook sends after commit."""
    hook = getattr(adapter_for(conversation.channel), "conversation_assigned", None)
    if hook is not None:
        hook(conversation, agent)


def channel_survey_card(conversation, card: dict) -> bool:
    """Let the conversation's channel show a rating card in place (the widget); False when the
    channel has no such hook (the survey goes as a message instead)."""
    hook = getattr(adapter_for(conversation.channel), "survey_card", None)
    if hook is None:
        return False
    return bool(hook(conversation, card))
