"""The web-chat widget's side of the domain: who a visitor is, what they may see, what they send.

A visitor is known only by a random token their browser keeps (localStorage). We never store the
token: the ``web_visitor`` identity holds ``sha256(token)`` (the *visitor key*), so a database
leak does not let anyone impersonate a visitor.

What a visitor may see (threats.md, widget identity forgery):

* an anonymous visitor sees only the widget conversations in which *this* visitor key wrote
  (``metadata["visitor"]`` on their inbound messages), even if an agent later merged their
  customer into a bigger record: a merge confirmed from a typed email must not open that
  customer's history to whoever typed it;
* a visitor whose site signed their user id (HMAC-SHA256 with the inbox secret) is proven to be
  that customer and sees that customer's conversations on this widget inbox;
* only ``kind=message`` rows of the widget inbox, never notes, events or other channels.

A typed (pre-chat or offline) email is a *claim*: ``identity_link(source=CLAIMED)`` attaches it
when nobody owns it and records a merge suggestion when someone does; it never links, and the
visitor is never told which happened (no account enumeration).
"""

import hashlib
import hmac
import logging
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from profiles import addresses
from profiles.languages import language_tag
from profiles.models import Customer, Identity, IdentityKind, IdentitySource
from profiles.services import MergeError, identity_link, identity_resolve

from ...events import publish_now
from ...groups import agent_group, conversation_group
from ...models import (
    Agent,
    Attachment,
    AttachmentState,
    Channel,
    Conversation,
    ConversationStatus,
    Direction,
    EventType,
    Inbox,
    Message,
    MessageKind,
    Queue,
)
from ...services.ingest import InboundMessage, message_receive

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
# C0/C1 controls other than tab and newline are dropped; bidi and zero-width characters are kept
# (they are legitimate in Japanese/Arabic text) and every client renders them as plain text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

DEFAULT_LIMITS = {
    "max_text": 4000,  # characters of one message
    "max_frame": 64 * 1024,  # bytes of one websocket frame
    "history": 200,  # messages sent on (re)connect
    "message_per_visitor": (20, 10),  # (count, seconds)
    "message_per_ip": (120, 10),
    # New chats: a generous allowance per client address (many real customers share one office
    # or carrier address) that still stops floods, and a tighter one per visitor token.
    "conversation_per_ip": (60, 600),
    "conversation_per_visitor": (5, 600),
    "hello_per_ip": (60, 60),
    "offline_per_ip": (5, 3600),
    "typing_per_visitor": (20, 10),
    "queue_per_visitor": (30, 60),  # queue-position requests (the widget polls every ~20 s per tab)
    "status_per_visitor": (30, 60),  # status requests (the widget asks each time it is opened)
}


def limits() -> dict:
    return {**DEFAULT_LIMITS, **getattr(settings, "CC_WIDGET_LIMITS", {})}


class WidgetError(Exception):
    """A refusal the widget shows the visitor: ``code`` is HTTP-like (400, 403, 404, 409, 413, 429)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.client_id: str | None = None  # the refused message's id: the widget marks that message

    def frame(self) -> dict:
        frame = {"type": "error", "code": self.code, "reason": self.reason}
        if self.client_id is not None:
            frame["id"] = self.client_id
        return frame


@dataclass(frozen=True)
class Visitor:
    inbox_id: int
    key: str  # sha256(token) hex: the web_visitor identity value
    ip: str
    signed_customer_id: int | None = None  # set when the site signed the user's id
    language: str = ""  # the browser's language (BCP 47), "" when it sent none or nonsense

    @property
    def signed(self) -> bool:
        return self.signed_customer_id is not None


# --- groups and events ------------------------------------------------------------------------


def widget_group(conversation_id: int) -> str:
    """The visitor sockets of one widget conversation (every tab of the visitor joins it)."""
    return f"widget.{conversation_id}"


def visitor_group(key: str) -> str:
    """Every socket (tab) of one visitor token: their own messages echo to all of them."""
    return f"visitor.{key}"


def _widget_send(group: str, event: dict) -> None:
    publish_now([group], event, handler="widget.event")


def _console_send(groups: list[str], event: dict) -> None:
    publish_now(groups, event)


def widget_message_frame(message: Message, *, agent_name: str = "") -> dict:
    """What the visitor's browser gets for one message: text only, rendered with textContent."""
    outbound = message.direction == Direction.OUTBOUND
    return {
        "type": "message",
        "id": message.pk,
        "client_id": (message.metadata or {}).get("client_id") if not outbound else None,
        "conversation": message.conversation_id,
        "from": "agent" if outbound else "visitor",
        "author": agent_name if outbound else "",
        "text": message.text,
        "at": message.created_at.isoformat(),
    }


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
    frame = {"type": "assigned", "conversation": conversation.pk, "name": agent.display_name}
    group = widget_group(conversation.pk)
    transaction.on_commit(lambda: _widget_send(group, frame))


def agent_typing_notify(*, conversation_id: int, agent: Agent, on: bool) -> None:
    """The console calls this while an agent types a reply: the visitor and other agents see it.
    Ephemeral: nothing is stored."""
    conversation = Conversation.objects.filter(pk=conversation_id).values("channel", "assignee_id").first()
    if conversation is None:
        return
    if conversation["channel"] == Channel.WEBCHAT:
        _widget_send(widget_group(conversation_id), {"type": "typing", "on": bool(on), "name": agent.display_name})
    _console_send(
        [conversation_group(conversation_id)],
        {"type": "typing", "conversation": conversation_id, "agent": agent.pk, "on": bool(on)},
    )


def visitor_typing_notify(*, visitor: Visitor, conversation_id: int, on: bool) -> None:
    """The visitor types: the assigned agent and whoever watches the conversation see it."""
    if conversation_id not in visitor_conversation_ids(visitor):
        raise WidgetError(404, "not_found")
    if not rate_allow(f"typing:{visitor.key}", *limits()["typing_per_visitor"]):
        return  # typing indicators are best effort: silently dropped, never an error
    assignee = Conversation.objects.filter(pk=conversation_id).values_list("assignee_id", flat=True).first()
    groups = [conversation_group(conversation_id)] + ([agent_group(assignee)] if assignee else [])
    _console_send(groups, {"type": "typing", "conversation": conversation_id, "customer": True, "on": bool(on)})


# --- rate limits ------------------------------------------------------------------------------


def rate_allow(key: str, count: int, seconds: int) -> bool:
    """At most about ``count`` accepted hits in any ``seconds`` for ``key``, a sliding window
    estimated from two fixed windows in the shared cache (the previous window's hits weighted by
    how much of it still lies inside the sliding one): no doubled burst at a window boundary, and
    ``count`` at once is the burst allowance. ``incr``/``decr`` are atomic in Redis and locmem, so
    concurrent daphne processes agree.

    A refused hit is taken back: refusals do not count, so someone who waits is let in again
    instead of being locked out by their own retries (issue 22)."""
    now = timezone.now().timestamp()
    window = int(now // seconds)
    elapsed = (now % seconds) / seconds
    current_key = f"cc:widget:rate:{key}:{seconds}:{window}"
    previous = cache.get(f"cc:widget:rate:{key}:{seconds}:{window - 1}") or 0
    cache.add(current_key, 0, timeout=2 * seconds + 1)
    try:
        hits = cache.incr(current_key)
    except ValueError:  # expired between add and incr
        cache.add(current_key, 1, timeout=2 * seconds + 1)
        hits = 1
    if previous * (1 - elapsed) + hits <= count:
        return True
    try:
        cache.decr(current_key)
    except ValueError:
        pass
    return False


def _require_rate(key: str, limit: tuple[int, int]) -> None:
    if not rate_allow(key, *limit):
        raise WidgetError(429, "rate_limited")


def _require_rates(checks: list[tuple[str, tuple[int, int]]]) -> None:
    """Every limit of ``checks`` or none: when one refuses, the hits already taken by the ones
    before it are given back, so a refused attempt counts against no limit."""
    taken = []
    for key, (count, seconds) in checks:
        if not rate_allow(key, count, seconds):
            for done_key, done_seconds in taken:
                _rate_give_back(done_key, done_seconds)
            raise WidgetError(429, "rate_limited")
        taken.append((key, seconds))


def _rate_give_back(key: str, seconds: int) -> None:
    window = int(timezone.now().timestamp() // seconds)
    try:
        cache.decr(f"cc:widget:rate:{key}:{seconds}:{window}")
    except ValueError:
        pass


# --- text -------------------------------------------------------------------------------------


def clean_text(raw, *, max_chars: int) -> str:
    """Visitor text as stored: controls dropped, everything else (markup, bidi, zero-width) kept as
    text. Raises ``WidgetError(413)`` past the limit and ``WidgetError(400)`` when empty."""
    if not isinstance(raw, str):
        raise WidgetError(400, "bad_frame")
    if len(raw) > max_chars:
        raise WidgetError(413, "too_long")
    text = _CONTROL.sub("", unicodedata.normalize("NFC", raw)).strip()
    if not text:
        raise WidgetError(400, "empty")
    return text


def _clean_name(raw) -> str:
    if not isinstance(raw, str):
        return ""
    return _CONTROL.sub("", raw).strip()[:100]


def _clean_email(raw) -> str:
    if not isinstance(raw, str) or len(raw) > 320:
        raise WidgetError(400, "bad_email")
    try:
        return addresses.normalize_email(raw)
    except ValidationError as exc:
        raise WidgetError(400, "bad_email") from exc


# --- who the visitor is -----------------------------------------------------------------------


def widget_inbox(address: str) -> Inbox | None:
    if not isinstance(address, str) or not address or len(address) > 320:
        return None
    return Inbox.objects.filter(kind=Channel.WEBCHAT, address=address, is_active=True).first()


def browser_language(raw) -> str:
    """The language tag the widget reports (``navigator.language``), or "". Dropped rather than
    refused: it only steers routing, and an old widget or an odd browser must still chat."""
    return language_tag(raw)


def visitor_key(token) -> str:
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise WidgetError(400, "bad_token")
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def user_signature(inbox: Inbox, user_id: str) -> str:
    """What the site computes on its server: hex HMAC-SHA256(inbox.secret, user id)."""
    return hmac.new(inbox.secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def _external_id(inbox: Inbox, user_id: str) -> str:
    # Ids of different sites must not collide ("123" on two shops are two people).
    namespace = str(inbox.settings.get("external_id_namespace") or inbox.address)
    return f"{namespace}:{user_id}"


def _active(customer: Customer) -> Customer:
    seen = set()
    while customer.merged_into_id is not None and customer.pk not in seen:
        seen.add(customer.pk)
        customer = Customer.objects.get(pk=customer.merged_into_id)
    return customer


def _visitor_customer(key: str) -> Customer | None:
    identity = Identity.objects.select_related("customer").filter(kind=IdentityKind.WEB_VISITOR, value=key).first()
    return _active(identity.customer) if identity else None


def visitor_hello(*, inbox: Inbox, token, ip: str, user: dict | None = None, language=None) -> Visitor:
    """Identify the visitor of a new socket. With ``user = {"id", "signature"}`` the signature is
    checked with the inbox secret; a valid one proves the visitor is that user and links (merges)
    the visitor's record with the user's. The client's own claims ("verified": true …) are ignored.
    ``language``: the browser's (``browser_language``), what the channel says about the customer."""
    _require_rate(f"hello-ip:{ip}", limits()["hello_per_ip"])
    key = visitor_key(token)
    language = browser_language(language)
    if not user:
        return Visitor(inbox_id=inbox.pk, key=key, ip=ip, language=language)
    if not isinstance(user, dict):
        raise WidgetError(400, "bad_frame")
    user_id, signature = user.get("id"), user.get("signature")
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id) or not isinstance(signature, str):
        raise WidgetError(400, "bad_user")
    if not inbox.secret or not hmac.compare_digest(user_signature(inbox, user_id), signature.lower()):
        raise WidgetError(403, "bad_signature")
    return Visitor(inbox_id=inbox.pk, key=key, ip=ip, signed_customer_id=_link_signed_user(inbox, key, user_id).pk,
                   language=language)


def _link_signed_user(inbox: Inbox, key: str, user_id: str) -> Customer:
    external = _external_id(inbox, user_id)
    with transaction.atomic():
        owner = _visitor_customer(key)
        if owner is not None:
            others = owner.identities.filter(kind=IdentityKind.EXTERNAL_ID).exclude(value=external)
            if others.exists():
                # The browser's token belongs to another signed-in user (shared computer): never
                # merge two users because they used the same browser. The widget picks a new token.
                raise WidgetError(409, "token_in_use")
        user_customer = identity_resolve(
            kind=IdentityKind.EXTERNAL_ID, value=external, source=IdentitySource.SIGNED
        ).customer
        try:
            if owner is None:
                identity_link(customer=user_customer, kind=IdentityKind.WEB_VISITOR, value=key,
                              source=IdentitySource.SIGNED, evidence={"inbox": inbox.pk})
                return user_customer
            # The anonymous visitor's record (and its conversations) joins the signed user's.
            _outcome, customer = identity_link(customer=owner, kind=IdentityKind.EXTERNAL_ID, value=external,
                                               source=IdentitySource.SIGNED, evidence={"inbox": inbox.pk})
        except MergeError as exc:
            raise WidgetError(409, "cannot_link") from exc
    return _active(customer)


# --- what the visitor may see -----------------------------------------------------------------


def visitor_conversation_ids(visitor: Visitor) -> list[int]:
    """The widget conversations this visitor may see, oldest first."""
    if visitor.signed:
        customer = Customer.objects.filter(pk=visitor.signed_customer_id).first()
        if customer is None:
            return []
        customer = _active(customer)
        query = Conversation.objects.filter(customer=customer, inbox_id=visitor.inbox_id)
    else:
        customer = _visitor_customer(visitor.key)
        if customer is None:
            return []
        mine = Message.objects.filter(
            customer=customer, inbox_id=visitor.inbox_id, direction=Direction.INBOUND, metadata__visitor=visitor.key,
        ).values("conversation_id")
        query = Conversation.objects.filter(customer=customer, inbox_id=visitor.inbox_id, pk__in=mine)
    return list(query.order_by("created_at", "id").values_list("pk", flat=True))


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


def access_visitor_conversation(visitor: Visitor, conversation_id) -> int:
    if not isinstance(conversation_id, int) or conversation_id not in visitor_conversation_ids(visitor):
        raise WidgetError(404, "not_found")
    return conversation_id


def access_visitor_attachment(visitor: Visitor, attachment_id) -> Attachment:
    """An attachment of a customer-visible message in one of the visitor's conversations, else 404."""
    if not isinstance(attachment_id, int):
        raise WidgetError(404, "not_found")
    attachment = (
        Attachment.objects.select_related("message")
        .filter(pk=attachment_id, message__kind=MessageKind.MESSAGE, message__inbox_id=visitor.inbox_id,
                message__conversation_id__in=visitor_conversation_ids(visitor), state=AttachmentState.STORED)
        .exclude(message__direction=Direction.INTERNAL)
        .first()
    )
    if attachment is None:
        raise WidgetError(404, "not_found")
    return attachment


# --- availability -----------------------------------------------------------------------------


def _visitor_chat(inbox: Inbox, visitor: Visitor | None, now: datetime) -> tuple[Customer | None, Conversation | None]:
    """The visitor's customer, as the ingest resolves them (their ``web_visitor`` identity, which
    follows merges; signed visitors have one too), and the conversation of this widget their next
    message would join (the ingest's choice: the customer's latest here, unless it is abandoned;
    a resolved one only if the message would reopen it: within the inbox's reopen window, not
    ended by the visitor), with its queue. Three statements at most, whatever the history."""
    from ...services.ingest import ACTIVE_STATUSES, within_reopen_window

    if visitor is None:
        return None, None
    customer = Customer.objects.filter(identities__kind=IdentityKind.WEB_VISITOR, identities__value=visitor.key).first()
    if customer is None:
        return customer, None
    latest = (
        Conversation.objects.filter(customer=customer, inbox=inbox).select_related("queue")
        .order_by("-last_message_at", "-id").first()
    )
    if latest is None or latest.abandoned_at is not None:
        return customer, None
    if latest.status in ACTIVE_STATUSES:
        return customer, latest
    if not within_reopen_window(latest, inbox, now) or _ended_by_visitor(latest):
        return customer, None
    return customer, latest


def _would_be_queue(inbox: Inbox, visitor: Visitor | None, customer: Customer | None, now: datetime) -> Queue | None:
    """The queue the routing rules would put a new chat of ``visitor`` in now: ``queue_pick`` on a
    conversation that is never saved, for their customer, or for a customer who does not exist
    yet with what the browser told us (the ingest creates them with exactly that). Like the ingest,
    the browser's language stands in for a customer who has none."""
    from ...routing.placement import queue_pick
    from ...services.ingest import customer_language

    language = customer_language(visitor.language) if visitor is not None else ""
    if customer is None:
        customer, tags = Customer(language=language), []  # nobody yet, so no tags
    else:
        tags = None  # read by queue_pick only when a rule asks about them
        if language and not customer.language:
            customer.language = language  # this instance only: the ingest stores it
    conversation = Conversation(customer=customer, inbox=inbox, channel=inbox.kind)
    queue_pick(conversation, tags=tags, at=now)
    return conversation.queue


def _available_agent_for(queue: Queue | None) -> bool:
    """Someone available who has every skill ``queue`` requires at its level, in one statement."""
    agents = Agent.objects.filter(presence__is_available=True)
    if queue is not None:
        from ...routing.eligibility import skills_lacking

        agents = agents.exclude(Exists(skills_lacking(queue_id=queue.pk, agent_id=OuterRef(OuterRef("pk")))))
    return agents.exists()


def _legacy_inbox_hours_open(inbox: Inbox, now: datetime) -> bool:
    """Older widgets kept their hours in ``inbox.settings["business_hours"]`` (``weekdays``,
    ``open``, ``close``). Still honoured so an upgrade does not open a closed chat, but the queue's
    business hours (the ones routing uses) are the place to set them now."""
    hours = inbox.settings.get("business_hours")
    if not hours:
        return True
    try:
        tz = zoneinfo.ZoneInfo(hours.get("time_zone") or settings.CC_DEFAULT_TIME_ZONE)
        local = now.astimezone(tz)
        opens = time.fromisoformat(hours.get("open", "00:00"))
        closes = time.fromisoformat(hours.get("close", "23:59"))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError, TypeError):
        logger.warning("inbox %s has unreadable business_hours; treating it as open", inbox.pk)
        return True
    if local.weekday() not in hours.get("weekdays", range(7)):
        return False
    return opens <= local.time() < closes


def _queue_open(queue: Queue | None, now: datetime) -> bool:
    from ...routing.hours import BusinessHours

    if queue is None or not queue.business_hours:
        return True
    try:
        return BusinessHours.from_config(queue.business_hours).is_open(now)
    except ValidationError:
        return True  # validated on save; an unreadable config never closes the chat silently


def widget_status(inbox: Inbox, *, visitor: Visitor | None = None, now: datetime | None = None) -> dict:
    """Whether a live agent can take ``visitor``'s chat now; when not, the widget offers the offline form.

    It speaks for where the chat is or would go, so it never promises a live agent the router would
    answer with another queue's after-hours message, nor the reverse: the agent who has the
    visitor's conversation; else the queue it waits in; else the queue the routing rules would
    pick for a new chat of this visitor (``_would_be_queue``). For that queue: its business hours
    (the ones routing applies) and an available agent with its skills.

    Every hello and every opening of the widget asks, on every page of the site: a fixed number of
    statements whatever the rules, skills, agents or history (tests: test_widget)."""
    now = now or timezone.now()
    customer, chat = _visitor_chat(inbox, visitor, now)
    if chat is not None and chat.assignee_id is not None:
        # An agent has the chat: whether they are here is the answer, closing time or not (they
        # finish what they started, and nobody else will be offered it). A resolved chat the next
        # message reopens goes back to its agent if they are available (ingest._reopen), and is
        # placed as a new one otherwise.
        if Agent.objects.filter(pk=chat.assignee_id, presence__is_available=True).exists():
            return {"type": "status", "online": True, "reason": "available"}
        if chat.status != ConversationStatus.RESOLVED:
            return {"type": "status", "online": False, "reason": "no_agent"}
    if chat is not None and chat.status != ConversationStatus.RESOLVED and chat.queue_id is not None:
        queue = chat.queue
    else:
        # No chat, one never placed (routing places it when it first routes it, queue_pick too), or
        # a resolved one reopened without its agent: placed by the rules, as a new chat is.
        queue = _would_be_queue(inbox, visitor, customer, now)
    if not _queue_open(queue, now) or not _legacy_inbox_hours_open(inbox, now):
        return {"type": "status", "online": False, "reason": "closed"}
    if not _available_agent_for(queue):
        return {"type": "status", "online": False, "reason": "no_agent"}
    return {"type": "status", "online": True, "reason": "available"}


def visitor_status(*, visitor: Visitor) -> dict:
    """``widget_status`` on request. Limited: each answer runs the routing rules."""
    _require_rate(f"status-visitor:{visitor.key}", limits()["status_per_visitor"])
    return widget_status(Inbox.objects.get(pk=visitor.inbox_id), visitor=visitor)


# --- writes -----------------------------------------------------------------------------------


def _client_id(raw) -> str:
    if not isinstance(raw, str) or not _CLIENT_ID.fullmatch(raw):
        raise WidgetError(400, "bad_id")
    return raw


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


def _has_active_conversation(visitor: Visitor) -> bool:
    from ...services.ingest import ACTIVE_STATUSES

    active = Conversation.objects.filter(pk__in=visitor_conversation_ids(visitor), status__in=ACTIVE_STATUSES)
    return any(not _ended_by_visitor(conversation) for conversation in active)


# --- queue position and ending the chat ---------------------------------------------------------

# Stored as a code, rendered in the reader's language: the resolved event says ``ended_by``, the
# abandon its reason. ``LEGACY_ENDED_NOTE``: the English note rows written before said it with.
ENDED_BY_CUSTOMER = "customer"
ENDED_REASON = "ended_by_customer"
LEGACY_ENDED_NOTE = "ended by the customer"


def _ended_by_visitor(conversation: Conversation) -> bool:
    """The visitor closed this chat for good: left while waiting (abandoned, nobody took it) or
    ended it while an agent had it (resolved with ``ended_by=customer``)."""
    if conversation.abandoned_at is not None and conversation.assignee_id is None:
        return True
    if conversation.status != ConversationStatus.RESOLVED:
        return False
    event = (
        Message.objects.filter(conversation=conversation, kind=MessageKind.EVENT, event_type=EventType.RESOLVED)
        .order_by("-created_at", "-id").values_list("event_data", flat=True).first()
    )
    return isinstance(event, dict) and (
        event.get("ended_by") == ENDED_BY_CUSTOMER or event.get("note") == LEGACY_ENDED_NOTE
    )


def _visitor_target(visitor: Visitor, conversation_id) -> Conversation | None:
    """The conversation a queue/end frame is about: the one named (only the visitor's own: else
    404), or the visitor's current one (the one their next message would join)."""
    if conversation_id is not None:
        return Conversation.objects.get(pk=access_visitor_conversation(visitor, conversation_id))
    ids = visitor_conversation_ids(visitor)
    if not ids:
        return None
    return Conversation.objects.filter(pk__in=ids).order_by("-last_message_at", "-id").first()


def queue_frame(conversation: Conversation | None) -> dict:
    """``{"type": "queue", "conversation", "waiting", "position", "estimated_wait_seconds"}``.
    ``waiting``: open and nobody has it yet; ``position`` is null while it is not (or not yet) in a
    queue, and once an agent has it: the widget hides the line then."""
    from ...routing.position import queue_position

    position = queue_position(conversation=conversation) if conversation is not None else None
    waiting = bool(
        conversation is not None and conversation.status == ConversationStatus.OPEN
        and conversation.assignee_id is None and conversation.abandoned_at is None
    )
    return {
        "type": "queue", "conversation": conversation.pk if conversation is not None else None,
        "waiting": waiting,
        "position": position["position"] if position else None,
        "estimated_wait_seconds": position["estimated_wait_seconds"] if position else None,
        # After hours with the fallback: no live wait to show, the answer comes later on this channel.
        "follow_up": (conversation.follow_up_channel or None) if conversation is not None and waiting else None,
    }


def visitor_queue(*, visitor: Visitor, conversation_id=None) -> dict:
    """Where the visitor's conversation stands in its queue (the widget polls this while waiting)."""
    _require_rate(f"queue-visitor:{visitor.key}", limits()["queue_per_visitor"])
    return queue_frame(_visitor_target(visitor, conversation_id))


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
    frame = {"type": "ended", "conversation": conversation.pk if conversation is not None else None}
    _widget_send(visitor_group(visitor.key), frame)
    return frame


def _ensure_visitor_customer(visitor: Visitor, name: str) -> Customer:
    if visitor.signed:
        return _active(Customer.objects.get(pk=visitor.signed_customer_id))
    return identity_resolve(kind=IdentityKind.WEB_VISITOR, value=visitor.key, display_name=name).customer


def _claim_email(customer: Customer, email: str, *, inbox_id: int, via: str) -> None:
    # A typed address is a claim: attached if free, a merge suggestion if someone owns it. Never a
    # link, never history. The visitor learns nothing about which happened.
    identity_link(customer=customer, kind=IdentityKind.EMAIL, value=email, source=IdentitySource.CLAIMED,
                  evidence={"via": via, "inbox": inbox_id})


def visitor_prechat(*, visitor: Visitor, name, email) -> dict:
    name = _clean_name(name)
    email = _clean_email(email) if email else ""
    _require_rate(f"msg-visitor:{visitor.key}", limits()["message_per_visitor"])
    with transaction.atomic():
        customer = _ensure_visitor_customer(visitor, name)
        if name and not customer.display_name:
            Customer.objects.filter(pk=customer.pk).update(display_name=name, updated_at=timezone.now())
        if email:
            _claim_email(customer, email, inbox_id=visitor.inbox_id, via="webchat_prechat")
    return {"type": "prechat", "ok": True}


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
