"""``/ws/widget/``: the web-chat widget's socket, on other people's sites.

No session and no cookies are used here (``AuthMiddlewareStack`` is not on this route): a visitor is
who their token says, and the token only ever reaches that visitor's own conversations. The Origin
is checked before accept against the widget inbox's ``settings["allowed_origins"]`` (empty: any
site may embed it), the inbox being named in the query string (``/ws/widget/?widget=<key>``)
because the first frame arrives only after accept.

Frames in:  hello {widget, token, locale, language?, user?: {id, signature}} · message {id, text} ·
            typing {on} · prechat {name, email} · offline_message {id, email, text, name?} ·
            status · history · attachment {id} · queue {conversation?} · end {conversation?}
Frames out: history {conversations, messages} · status {online, reason} · message · typing (agent) ·
            prechat/offline_message {ok} · attachment · assigned {conversation, name} ·
            queue {conversation, waiting, position, estimated_wait_seconds} (on request, and after
            the visitor's message while it waits in a queue) · ended {conversation} (every tab) ·
            error {code, reason, id?} (id: the refused message's)
"""

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from urllib.parse import parse_qs, urlparse

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator, WebsocketDenier

from contactcenter.client_address import scope_client_address
from contactcenter.decoding import UndecodableInput, json_decode

from ... import lifecycle
from ...groups import visitor_group, widget_group
from ...layer_watch import LAYER_LOST_CLOSE_CODE, ChannelLayerWatch
from ...models import Inbox
from ...socket_caps import SOCKET_CAP_CLOSE_CODE, claim_socket_slot, release_socket_slot
from ...socket_cleanup import (
    CLEANUP_BUDGET_SECONDS,
    finish_despite_cancellation,
    leave_groups,
)
from ...socket_dispatch import NoDatabaseHopPerEvent, database_work_in_parallel
from ...socket_stop import DisconnectWhenServerStops
from . import ingest as webchat_ingest
from . import input_limits as webchat_input_limits
from . import status as webchat_status
from . import visitors as webchat_visitors
from .events import survey_answered_frame, survey_card_frame
from .input_limits import WidgetError

logger = logging.getLogger(__name__)

MAX_ATTACHMENT_FRAME_BYTES = 2 * 1024 * 1024
# Message ids this socket was last sent (its own acks go straight to it, and the same message
# then also arrives through the visitor's group): enough to cover a burst of typing.
SENT_MESSAGES_REMEMBERED = 64


def _query_widget(scope) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    return (query.get("widget") or [""])[0]


def _origin(scope):
    for name, value in scope.get("headers", []):
        if name == b"origin":
            try:
                return urlparse(value.decode("latin1"))
            except (UnicodeDecodeError, ValueError):
                return None
    return None


def _inbox_origins(address: str):
    inbox = webchat_visitors.widget_inbox(address)
    if inbox is None:
        return None, None
    origins = inbox.settings.get("allowed_origins") or []
    return inbox, [str(o) for o in origins] if isinstance(origins, list) else []


class WidgetOriginValidator:
    """Refuses the handshake (before accept) unless the widget inbox exists and is active and the
    Origin is one of its ``allowed_origins`` (the patterns of channels' ``OriginValidator``)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        inbox, origins = await database_work_in_parallel(_inbox_origins)(_query_widget(scope))
        allowed = inbox is not None and (not origins or OriginValidator(None, origins).valid_origin(_origin(scope)))
        if not allowed:
            return await WebsocketDenier()(scope, receive, send)
        # The inbox read here is the hello's too (one query less per socket).
        return await self.application(dict(scope, widget_inbox_id=inbox.pk, widget_inbox=inbox), receive, send)


class WidgetConsumer(DisconnectWhenServerStops, ChannelLayerWatch, NoDatabaseHopPerEvent, AsyncWebsocketConsumer):
    async def connect(self):
        self.visitor = None
        self.joined: set[str] = set()
        self.sent_messages: deque[int] = deque(maxlen=SENT_MESSAGES_REMEMBERED)
        # Per-address limits count this (contactcenter.client_address: the proxy's hop, not a
        # forgeable X-Forwarded-For entry).
        self.ip = scope_client_address(self.scope)
        await self.accept()
        self.layer_watch_start()

    async def layer_watch_lost(self):
        """Its conversations' groups are gone or the layer is down: close with 4503; widget.js
        reconnects, says hello again (joining the groups anew) and gets the history it missed.
        What can still be left is left, briefly (the layer may be down)."""
        groups, self.joined = list(self.joined), set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(leave_groups(self.channel_layer, self.channel_name, groups), timeout=2)
        await self.close(code=LAYER_LOST_CLOSE_CODE)

    async def disconnect(self, code):
        # Not cut short by a cancellation (daphne cancels an instance that takes long to close,
        # as it may when thousands close at once): the groups are left all the same.
        await finish_despite_cancellation(self._clean_up(), timeout=CLEANUP_BUDGET_SECONDS)

    async def _clean_up(self):
        """Everything a closing socket undoes, once, never raising (conversations.socket_cleanup):
        also run from ``__call__`` however the instance ends (socket_stop)."""
        if getattr(self, "_cleaned_up", False):
            return
        self._cleaned_up = True
        self.layer_watch_stop()
        groups, self.joined = list(getattr(self, "joined", ())), set()
        await leave_groups(self.channel_layer, self.channel_name, groups)
        await release_socket_slot(self)

    async def socket_evicted(self, event):
        """The visitor opened more sockets (tabs) than the cap allows and this one is the oldest:
        the widget says so and does not reconnect (widget.js, code 4429)."""
        await self.send_json(WidgetError(429, "too_many_tabs").frame())
        groups, self.joined = list(self.joined), set()
        await leave_groups(self.channel_layer, self.channel_name, groups)
        await self.close(code=SOCKET_CAP_CLOSE_CODE)

    async def _join(self, group: str) -> None:
        if group not in self.joined:
            self.joined.add(group)
            await self.channel_layer.group_add(group, self.channel_name)

    async def send_json(self, content):
        await self.send(text_data=json.dumps(content, ensure_ascii=False))

    async def receive(self, text_data=None, bytes_data=None):
        max_frame = webchat_input_limits.limits()["max_frame"]
        if text_data is None or len(text_data) > max_frame or len(text_data.encode("utf-8")) > max_frame:
            # Never parse a huge frame: answer before touching it.
            code = 413 if text_data is not None or bytes_data else 400
            await self.send_json(WidgetError(code, "too_long" if code == 413 else "bad_frame").frame())
            return
        try:
            # Bounded nesting and finite numbers (contactcenter.decoding): a hostile frame is a
            # bad_frame error like any other, never an exception that ends the socket with 1011.
            content = json_decode(text_data)
        except UndecodableInput:
            content = None
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_json(WidgetError(400, "bad_frame").frame())
            return
        try:
            await self.dispatch_frame(content)
        except WidgetError as exc:
            await self.send_json(exc.frame())
            if content["type"] == "hello":
                await self.close(code=4000 + exc.code)

    async def dispatch_frame(self, content: dict) -> None:
        kind = content["type"]
        if kind == "hello":
            return await self.on_hello(content)
        if self.visitor is None:
            raise WidgetError(401, "hello_first")
        handler = {
            "message": self.on_message, "typing": self.on_typing, "prechat": self.on_prechat,
            "offline_message": self.on_offline_message, "status": self.on_status, "history": self.on_history,
            "attachment": self.on_attachment, "ping": self.on_ping, "queue": self.on_queue, "end": self.on_end,
            "survey_answer": self.on_survey_answer,
        }.get(kind)
        if handler is None:
            raise WidgetError(400, "unknown_type")
        await handler(content)

    async def on_hello(self, content):
        if self.visitor is not None:
            raise WidgetError(400, "already_hello")
        # The visitor's group first: a message stored while the history is read still arrives.
        await self._join(visitor_group(webchat_visitors.visitor_key(content.get("token"))))
        # One hop for the whole hello (it was five on the one database thread, where a reconnect
        # storm queued every socket's hops), on threads of its own where connections are pooled.
        visitor, ids, history, status, cards = await database_work_in_parallel(self._hello)(content)
        self.visitor = visitor
        for conversation_id in ids:
            await self._join(widget_group(conversation_id))
        # Every tab of a visitor token counts: past the cap the oldest closes (4429).
        await claim_socket_slot(self, kind="widget", owner=visitor.key)
        await self.send_json({"type": "history", "conversations": ids, "messages": history})
        await self.send_json(status)
        for frame in cards:
            await self.send_json(frame)

    def _hello(self, content: dict):
        """Who the visitor is, their conversations and history, the status and the rating cards
        they missed: what a hello answers, read in one go."""
        inbox_id = self.scope["widget_inbox_id"]
        widget = content.get("widget")
        inbox = self.scope.get("widget_inbox")
        if widget and widget != _query_widget(self.scope) or inbox is None:
            inbox = webchat_visitors.widget_inbox(widget) if widget else None
            if widget and (inbox is None or inbox.pk != inbox_id):
                raise WidgetError(400, "bad_widget")
            if inbox is None:
                inbox = Inbox.objects.get(pk=inbox_id)
        # Only the token and the site's signature count; "verified" or "customer" fields are ignored.
        # "language" is the browser's (the customer's), not "locale", the widget's display language
        # that the site may fix.
        visitor = webchat_visitors.visitor_hello(
            inbox=inbox, token=content.get("token"), ip=self.ip, user=content.get("user") or None,
            language=content.get("language"),
        )
        customer = webchat_visitors.visitor_customer(visitor)
        ids = webchat_visitors.visitor_conversation_ids(visitor, customer=customer)
        history = webchat_ingest.visitor_history(visitor, ids)
        status = webchat_status.widget_status(inbox, visitor=visitor, customer=customer)
        return visitor, ids, history, status, self._pending_survey_cards(customer)

    @staticmethod
    def _pending_survey_cards(customer) -> list[dict]:
        """A rating card sent while the visitor was away is shown on their next visit (the
        database is the truth, not the frame): asked of whoever answers widget surveys."""
        if customer is None:
            return []
        return [survey_card_frame(card) for card in lifecycle.widget_pending_cards(customer_id=customer.pk)]

    async def on_survey_answer(self, content):
        """The visitor rated the chat in the widget's card: whoever takes widget answers
        (conversations.lifecycle) checks the survey's token against this visitor's customer."""
        def answer():
            customer = webchat_visitors.visitor_customer(self.visitor)
            payload = {"token": content.get("survey"), "score": content.get("score"), "comment": content.get("comment")}
            return lifecycle.widget_answer(customer_id=customer.pk if customer else None, payload=payload)

        result = await database_sync_to_async(answer)()
        if result is None:
            raise WidgetError(400, "unknown_type")
        await self.send_json(survey_answered_frame(result))

    async def _send_history(self):
        def load():
            ids = webchat_visitors.visitor_conversation_ids(self.visitor)
            return ids, webchat_ingest.visitor_history(self.visitor, ids)

        ids, messages = await database_sync_to_async(load)()
        for conversation_id in ids:
            await self._join(widget_group(conversation_id))
        await self.send_json({"type": "history", "conversations": ids, "messages": messages})

    async def on_history(self, content):
        await self._send_history()

    async def on_message(self, content):
        try:
            frame, duplicate = await database_sync_to_async(webchat_ingest.visitor_message_receive)(
                visitor=self.visitor, client_id=content.get("id"), text=content.get("text"),
                name=content.get("name") or "",
            )
        except WidgetError as exc:
            # Named, the refusal is shown next to that very message (with a retry): never as sent.
            if isinstance(content.get("id"), str):
                exc.client_id = content["id"][:64]
            raise
        await self._join(widget_group(frame["conversation"]))
        # The acknowledgement goes straight to this socket, never only through the layer, which
        # drops frames when a busy process's inbox is full; the visitor's other tabs hear it
        # through the visitor's group. A resend (its ack was lost) is acked again, stored once.
        if duplicate:
            await self.send_json(frame)
        else:
            await self._send_message_once(frame)

    async def _send_message_once(self, frame: dict) -> None:
        if frame.get("id") in self.sent_messages:
            return
        self.sent_messages.append(frame.get("id"))
        await self.send_json(frame)

    async def on_typing(self, content):
        conversation_id = content.get("conversation")
        if conversation_id is None:
            ids = await database_sync_to_async(webchat_visitors.visitor_conversation_ids)(self.visitor)
            if not ids:
                return
            conversation_id = ids[-1]
        await database_sync_to_async(webchat_ingest.visitor_typing_notify)(
            visitor=self.visitor, conversation_id=conversation_id, on=bool(content.get("on"))
        )

    async def on_prechat(self, content):
        await self.send_json(await database_sync_to_async(webchat_visitors.visitor_prechat)(
            visitor=self.visitor, name=content.get("name"), email=content.get("email")
        ))

    async def on_offline_message(self, content):
        await self.send_json(await database_sync_to_async(webchat_ingest.visitor_offline_message)(
            visitor=self.visitor, client_id=content.get("id"), email=content.get("email"),
            text=content.get("text"), name=content.get("name") or "",
        ))

    async def on_status(self, content):
        await self.send_json(await database_sync_to_async(webchat_status.visitor_status)(visitor=self.visitor))

    async def on_queue(self, content):
        await self.send_json(await database_sync_to_async(webchat_status.visitor_queue)(
            visitor=self.visitor, conversation_id=content.get("conversation")
        ))

    async def on_end(self, content):
        # The "ended" frame reaches this socket through the visitor's group, with the other tabs.
        await database_sync_to_async(webchat_ingest.visitor_end)(
            visitor=self.visitor, conversation_id=content.get("conversation")
        )

    async def on_ping(self, content):
        await self.send_json({"type": "pong"})

    async def on_attachment(self, content):
        def load():
            attachment = webchat_visitors.access_visitor_attachment(self.visitor, content.get("id"))
            if attachment.size > MAX_ATTACHMENT_FRAME_BYTES:
                raise WidgetError(413, "too_large")
            with attachment.file.open("rb") as handle:
                data = handle.read(MAX_ATTACHMENT_FRAME_BYTES + 1)
            return {
                "type": "attachment", "id": attachment.pk, "message": attachment.message_id,
                "filename": attachment.filename, "content_type": attachment.content_type,
                "size": attachment.size, "data": base64.b64encode(data).decode("ascii"),
            }

        await self.send_json(await database_sync_to_async(load)())

    async def widget_event(self, event):
        """Relay an event of the visitor's groups; a message of a conversation opened in another
        tab makes this tab join that conversation's group too."""
        frame = event["event"]
        conversation_id = frame.get("conversation")
        if frame.get("type") == "message":
            if isinstance(conversation_id, int):
                await self._join(widget_group(conversation_id))
            await self._send_message_once(frame)
            return
        await self.send_json(frame)
