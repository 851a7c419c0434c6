"""Web chat: the widget's websocket is both the inbound and the outbound provider.

Inbound is verified and parsed by ``consumer.py`` (per-inbox Origin check, the
visitor token) and stored by ``ingest.visitor_message_receive`` through the one ingest
path. Outbound (``send``) pushes the stored reply to the visitor's sockets; a visitor who is not
connected gets it from the database with the history on their next connect, so "delivered" here
means "handed to the channel layer", exactly like a provider accepting a message.
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ...models import Message, MessageKind
from .. import PermanentSendError, SendResult, TransientSendError


def send(message: Message, *, to: str, from_: str) -> SendResult:
    from ...events import widget_layer_message
    from ...groups import widget_group
    from .events import widget_message_frame

    if message.kind != MessageKind.MESSAGE:
        raise PermanentSendError("Notes and events are never sent to a visitor", code="not_a_message")
    layer = get_channel_layer()
    if layer is None:
        raise PermanentSendError("No channel layer configured", code="no_layer")
    agent_name = message.author_agent.display_name if message.author_agent_id else ""
    frame = widget_message_frame(message, agent_name=agent_name)
    try:
        async_to_sync(layer.group_send)(widget_group(message.conversation_id), widget_layer_message(frame))
    except Exception as exc:
        raise TransientSendError(f"channel layer: {exc}") from exc
    return SendResult(provider_id=f"wc-{message.pk}", status="delivered")


def conversation_assigned(conversation, agent) -> None:
    """The channel registry's hook: the visitor's sockets hear "<agent> joined" after commit."""
    from .ingest import widget_assigned_publish

    widget_assigned_publish(conversation, agent)


def survey_card(conversation, card: dict) -> bool:
    """The channel registry's hook: show a rating card in the visitor's widget (every tab of every
    visitor key of the customer), after commit. A visitor who is not connected gets it on their
    next hello (``pending_survey_cards``)."""
    from django.db import transaction

    from profiles.models import IdentityKind

    from ...groups import visitor_group
    from .events import survey_card_frame
    from .ingest import _widget_send

    keys = list(conversation.customer.identities.filter(kind=IdentityKind.WEB_VISITOR).values_list("value", flat=True))
    frame = survey_card_frame(card)
    for key in keys:
        transaction.on_commit(lambda key=key: _widget_send(visitor_group(key), frame))
    return True
