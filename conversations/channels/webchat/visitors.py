"""Who a widget visitor is and what they may see.

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
import re
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from profiles.languages import language_tag
from profiles.models import Customer, Identity, IdentityKind, IdentitySource
from profiles.services import MergeError, identity_link, identity_resolve

from ...models import (
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
)
from .input_limits import WidgetError, _clean_email, _clean_name, _require_rate, limits

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


_USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


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


def visitor_customer(visitor: Visitor) -> Customer | None:
    """The customer behind a visitor's key (after merges), or None before their first message."""
    return _visitor_customer(visitor.key)


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


_UNKNOWN = object()


def visitor_conversation_ids(visitor: Visitor, *, customer=_UNKNOWN) -> list[int]:
    """The widget conversations this visitor may see, oldest first. ``customer``: the visitor's
    (``visitor_customer``), when the caller has read it already."""
    if visitor.signed:
        customer = Customer.objects.filter(pk=visitor.signed_customer_id).first()
        if customer is None:
            return []
        customer = _active(customer)
        query = Conversation.objects.filter(customer=customer, inbox_id=visitor.inbox_id)
    else:
        if customer is _UNKNOWN:
            customer = _visitor_customer(visitor.key)
        if customer is None:
            return []
        mine = Message.objects.filter(
            customer=customer, inbox_id=visitor.inbox_id, direction=Direction.INBOUND, metadata__visitor=visitor.key,
        ).values("conversation_id")
        query = Conversation.objects.filter(customer=customer, inbox_id=visitor.inbox_id, pk__in=mine)
    return list(query.order_by("created_at", "id").values_list("pk", flat=True))


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


def _has_active_conversation(visitor: Visitor) -> bool:
    from ...services.ingest import ACTIVE_STATUSES

    active = Conversation.objects.filter(pk__in=visitor_conversation_ids(visitor), status__in=ACTIVE_STATUSES)
    return any(not _ended_by_visitor(conversation) for conversation in active)


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
