"""The web-chat widget's messages: a visitor's message, typing and end go through the one ingest
path; agents' replies, typing and assignment reach the visitor's sockets after commit.
"""

import logging

from django.db import transaction

from profiles.models import IdentityKind

from ...events import publish_now, typing_event
from ...groups import agent_group, conversation_group, visitor_group, widget_group
from ...models import (
    Agent,
    Channel,
    Conversation,
    ConversationStatus,
    Direction,
    Inbox,
    Message,
    MessageKind,
)
from ...services.ingest import InboundMessage, message_receive
from .events import (
    agent_typing_frame,
    assigned_frame,
    ended_frame,
    widget_message_frame,
)
from .input_limits import (
    WidgetError,
    _clean_email,
    _clean_name,
    _client_id,
    _require_rate,
    _require_rates,
    clean_text,
    limits,
    rate_allow,
)
from .status import queue_frame
from .visitors import (
    ENDED_BY_CUSTOMER,
    ENDED_REASON,
    Visitor,
    _claim_email,
    _ended_by_visitor,
    _has_active_conversation,
    _visitor_target,
    visitor_conversation_ids,
)

logger = logging.getLogger(__name__)


def _widget_send(group: str, event: dict) -> None:
    publish_now([group], event, handler="widget.event")


def _console_send(groups: list[str], event: dict) -> None:
    publish_now(groups, event)


def widget_message_publish(message: Message) -> None:
    """Send a visitor-visible message to the visitor's sockets after commit. Notes and events never."""
    if message.kind != MessageKind.MESSAGE or message.channel != Channel.WEBCHAT:
        return
    agent_name = message.author_agent.display_name if message.author_agent_id else ""
    frame = widget_message_frame(message, agent_name=agent_name)
    visitor = (message.metadata or {}).get("visitor") if message.direction == Direction.INBOUND else None
    group = visitor_group(visitor) if visitor else widget_group(message.conversation_id)
    transaction.on_commit(lambda: _widget_send(group, frame))


def widget_assigned_publish(conversation: Conversation, agent: Agent) -> None:
    """An agent took a web chat: the visitor's sockets hear it after commit (the widget drops the
    queue position and says "<agent> joined")."""
    if conversation.channel != Channel.WEBCHAT:
        return
    frame = assigned_frame(conversation, agent)
    group = widget_group(conversation.pk)
    transaction.on_commit(lambda: _widget_send(group, frame))


def agent_typing_notify(*, conversation_id: int, agent: Agent, on: bool) -> None:
    """The console calls this while an agent types a reply: the visitor and other agents see it.
    Ephemeral: nothing is stored."""
    conversation = Conversation.objects.filter(pk=conversation_id).values("channel", "assignee_id").first()
    if conversation is None:
        return
    if conversation["channel"] == Channel.WEBCHAT:
        _widget_send(widget_group(conversation_id), agent_typing_frame(agent, on=on))
    _console_send([conversation_group(conversation_id)], typing_event(conversation_id, agent_id=agent.pk, on=on))


def visitor_typing_notify(*, visitor: Visitor, conversation_id: int, on: bool) -> None:
    """The visitor types: the assigned agent and whoever watches the conversation see it."""
    if conversation_id not in visitor_conversation_ids(visitor):
        raise WidgetError(404, "not_found")
    if not rate_allow(f"typing:{visitor.key}", *limits()["typing_per_visitor"]):
        return  # typing indicators are best effort: silently dropped, never an error
    assignee = Conversation.objects.filter(pk=conversation_id).values_list("assignee_id", flat=True).first()
    groups = [conversation_group(conversation_id)] + ([agent_group(assignee)] if assignee else [])
    _console_send(groups, typing_event(conversation_id, customer=True, on=on))


def visitor_history(visitor: Visitor, conversation_ids: list[int] | None = None) -> list[dict]:
    """The last messages of the visitor's conversations: customer-visible messages only."""
    ids = visitor_conversation_ids(visitor) if conversation_ids is None else conversation_ids
    if not ids:
        return []
    rows = (
        Message.objects.filter(conversation_id__in=ids, inbox_id=visitor.inbox_id, channel=Channel.WEBCHAT,
                               kind=MessageKind.MESSAGE)
        .exclude(direction=Direction.INTERNAL)
        .select_related("author_agent")
        .order_by("-created_at", "-id")[: limits()["history"]]
    )
    return [
        widget_message_frame(m, agent_name=m.author_agent.display_name if m.author_agent_id else "")
        for m in reversed(list(rows))
    ]


def visitor_message_receive(*, visitor: Visitor, client_id, text, name: str = "") -> tuple[dict, bool]:
    """One visitor message through the one ingest path; returns (message frame, duplicate).

    Idempotent on the client's message id, which is namespaced by the visitor key: another visitor
    reusing the id stores their own message and never gets ours back. A new message is echoed to
    every socket of the visitor after commit (``visitor_group``)."""
    client_id = _client_id(client_id)
    text = clean_text(text, max_chars=limits()["max_text"])
    provider_id = f"wv:{visitor.key}:{client_id}"
    inbox = Inbox.objects.get(pk=visitor.inbox_id)
    already = Message.objects.filter(inbox=inbox, provider_id=provider_id).first()
    if already is not None:
        return widget_message_frame(already), True
    checks = [(f"msg-visitor:{visitor.key}", limits()["message_per_visitor"]),
              (f"msg-ip:{visitor.ip}", limits()["message_per_ip"])]
    if not visitor_conversation_ids(visitor) or not _has_active_conversation(visitor):
        # A new chat: a tight limit per visitor token (one person does not start many chats) and
        # a generous one per client address (an office or a mobile carrier puts many real
        # customers behind one address: it only stops floods).
        checks += [(f"conv-visitor:{visitor.key}", limits()["conversation_per_visitor"]),
                   (f"conv-ip:{visitor.ip}", limits()["conversation_per_ip"])]
    _require_rates(checks)
    with transaction.atomic():
        # After "End chat" the next message starts a new conversation (the ingest would otherwise
        # reopen the ended one or append to the abandoned one).
        result = message_receive(InboundMessage(
            inbox=inbox, sender_kind=IdentityKind.WEB_VISITOR, sender_address=visitor.key, text=text,
            sender_name=_clean_name(name), sender_language=visitor.language, provider_id=provider_id,
            metadata={"visitor": visitor.key, "client_id": client_id, "ip": visitor.ip},
            start_fresh_if=_ended_by_visitor,
        ))
        if not result.duplicate:
            widget_message_publish(result.message)  # to every tab, after commit
    if not result.duplicate:
        # Still waiting in a queue: the visitor learns where they stand right after their message
        # (after the echo: same group, same order). Not yet queued (routing runs in the worker):
        # nothing now, the widget asks again shortly.
        frame = queue_frame(result.conversation)
        if frame["position"] is not None:
            _widget_send(visitor_group(visitor.key), frame)
    return widget_message_frame(result.message), result.duplicate


def visitor_end(*, visitor: Visitor, conversation_id=None) -> dict:
    """The visitor pressed "End chat". Still waiting: routing is canceled and the conversation counts
    as abandoned. With an agent: resolved (``ended_by=customer``), which frees the agent. An after-hours
    follow-up stays open: we told them we would answer. Idempotent.
    Every tab of the visitor gets ``{"type": "ended"}`` and clears; the next message opens a new
    conversation."""
    from ...routing.assignment import conversation_abandon, conversation_resolve
    from ...routing.offers import RoutingError

    _require_rate(f"msg-visitor:{visitor.key}", limits()["message_per_visitor"])
    conversation = _visitor_target(visitor, conversation_id)
    if conversation is not None and conversation.follow_up_at is not None:
        # After hours we promised an answer (by email when they gave one): leaving keeps it open.
        pass
    elif conversation is not None and not _ended_by_visitor(conversation) \
            and conversation.status != ConversationStatus.RESOLVED:
        abandoned = conversation.assignee_id is None and conversation.status == ConversationStatus.OPEN and \
            conversation_abandon(conversation_id=conversation.pk, reason=ENDED_REASON)
        if not abandoned:
            # With an agent (or taken between our read and the abandon's lock), or parked unassigned.
            try:
                conversation_resolve(conversation_id=conversation.pk, by=None, ended_by=ENDED_BY_CUSTOMER)
            except RoutingError:
                # The queue wants a wrap-up code only the agent can give: the agent resolves it.
                logger.info("conversation %s ended by the visitor; left for the agent's wrap-up", conversation.pk)
    frame = ended_frame(conversation.pk if conversation is not None else None)
    _widget_send(visitor_group(visitor.key), frame)
    return frame


def offline_inbox(widget: Inbox) -> Inbox | None:
    address = widget.settings.get("offline_email_inbox")
    query = Inbox.objects.filter(kind=Channel.EMAIL, is_active=True)
    if address:
        return query.filter(address=address).first()
    return query.order_by("id").first()


def visitor_offline_message(*, visitor: Visitor, client_id, email, text, name="") -> dict:
    """Nobody can chat now: the message becomes an email conversation of the *visitor's* customer.

    The ingest runs on the email inbox with the visitor key as sender (so it resolves the visitor,
    never the owner of the typed address); the typed address is recorded as a claim and as the
    reply address in the message metadata (``reply_to``)."""
    client_id = _client_id(client_id)
    email = _clean_email(email)
    text = clean_text(text, max_chars=limits()["max_text"])
    widget = Inbox.objects.get(pk=visitor.inbox_id)
    target = offline_inbox(widget)
    if target is None:
        raise WidgetError(503, "offline_unavailable")
    provider_id = f"wv:{visitor.key}:{client_id}"
    if Message.objects.filter(inbox=target, provider_id=provider_id).exists():
        return {"type": "offline_message", "ok": True}
    _require_rates([(f"offline-ip:{visitor.ip}", limits()["offline_per_ip"]),
                    (f"msg-visitor:{visitor.key}", limits()["message_per_visitor"])])
    name = _clean_name(name)
    with transaction.atomic():
        result = message_receive(InboundMessage(
            inbox=target, sender_kind=IdentityKind.WEB_VISITOR, sender_address=visitor.key, text=text,
            sender_name=name, sender_language=visitor.language, provider_id=provider_id,
            subject=_offline_subject(widget, text),
            metadata={"visitor": visitor.key, "client_id": client_id, "reply_to": email, "via": "webchat_offline",
                      "widget_inbox": widget.pk, "ip": visitor.ip},
        ))
        _claim_email(result.customer, email, inbox_id=widget.pk, via="webchat_offline")
    return {"type": "offline_message", "ok": True}


def _offline_subject(widget: Inbox, text: str) -> str:
    first_line = text.splitlines()[0] if text else ""
    return f"[{widget.name}] {first_line}"[:300]
