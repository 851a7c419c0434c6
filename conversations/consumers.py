"""Websocket consumers: authenticate from the session, join groups, relay events (thin by design)."""

import asyncio
import contextlib

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from contactcenter.decoding import UndecodableInput, json_decode
from contactcenter.permissions import is_contact_center_staff

from .events import viewer_message
from .groups import (
    agent_group,
    conversation_group,
    customer_group,
    session_group,
    supervisors_group,
    user_group,
)
from .layer_watch import LAYER_LOST_CLOSE_CODE, ChannelLayerWatch
from .socket_caps import SOCKET_CAP_CLOSE_CODE, claim_socket_slot, release_socket_slot
from .socket_cleanup import (
    CLEANUP_BUDGET_SECONDS,
    finish_despite_cancellation,
    leave_groups,
    suppress_and_log,
)
from .socket_dispatch import NoDatabaseHopPerEvent
from .socket_stop import DisconnectWhenServerStops


@database_sync_to_async
def _console_groups(user, session_key: str | None) -> list[str] | None:
    if not is_contact_center_staff(user) or not session_key:
        return None
    groups = [session_group(session_key), user_group(user.pk)]
    agent = getattr(user, "agent", None) if hasattr(user, "agent") else None
    if agent is not None:
        groups.append(agent_group(agent.pk))
    if user.is_superuser or user.groups.filter(name__in=("supervisor", "admin")).exists():
        groups.append(supervisors_group())
    return groups


@database_sync_to_async
def _act(user, kind: str, content: dict) -> dict:
    """Agent actions over the socket; every one re-checks who the user is and what they may touch."""
    from django.core.exceptions import ValidationError

    from .models import Agent, Offer, PresenceState
    from .routing.offers import offer_accept, offer_reject
    from .routing.presence import agent_presence_set

    agent = Agent.objects.filter(user=user).first()
    if agent is None:
        return {"type": "error", "code": 403, "reason": "no agent profile", "for": kind}
    try:
        if kind == "presence.set":
            presence = PresenceState.objects.filter(pk=int(content.get("presence", 0))).first()
            if presence is None:
                return {"type": "error", "code": 400, "reason": "unknown presence", "for": kind}
            agent_presence_set(agent=agent, presence=presence)
            return {"type": "ack", "for": kind, "presence": presence.pk}
        offer = Offer.objects.filter(pk=int(content.get("offer", 0)), agent=agent).first()
        if offer is None:
            return {"type": "error", "code": 404, "reason": "no such offer", "for": kind}
        action = offer_accept if kind == "offer.accept" else offer_reject
        offer = action(offer_id=offer.pk, agent=agent)
        return {"type": "ack", "for": kind, "offer": offer.pk, "status": offer.status}
    except (TypeError, ValueError):
        return {"type": "error", "code": 400, "reason": "bad frame", "for": kind}
    except ValidationError as exc:
        return {"type": "error", "code": 409, "reason": " ".join(exc.messages), "for": kind}


_ACTIONS = {"presence.set", "offer.accept", "offer.reject"}


@database_sync_to_async
def _watchable(user, conversation_id) -> dict | None:
    """The conversation's customer and the agent's name if ``user`` may see it (the same check as
    the page: a stranger's ids are refused), else None."""
    from django.http import Http404

    from .selectors import access_conversation, is_supervisor

    try:
        conversation = access_conversation(user=user, conversation_id=conversation_id)
    except Http404:
        return None
    agent = getattr(user, "agent", None) if hasattr(user, "agent") else None
    name = agent.display_name if agent is not None else (user.get_full_name() or user.get_username())
    # A supervisor sees every conversation for as long as they are one; a change of role makes the
    # socket authenticate again (console_reauthenticate), so the role is read once, here.
    return {"conversation": conversation.pk, "customer": conversation.customer_id, "name": name,
            "agent": agent.pk if agent is not None else None, "supervisor": is_supervisor(user)}


@database_sync_to_async
def _still_watchable(watching: dict) -> bool:
    """Whether the socket may still hear what it watches: the access rule asked again (one query),
    since an offer rejected or timed out, a colleague's assignment or a transfer ends an agent's
    access while their socket is open."""
    if watching["supervisor"]:
        return True
    if watching["agent"] is None:
        return False
    from .selectors import conversation_accessible

    return conversation_accessible(agent_id=watching["agent"], conversation_id=watching["conversation"])


def _watch_ended_event(user, conversation_id: int) -> dict:
    from django.conf import settings
    from django.utils import translation
    from django.utils.translation import gettext as _

    agent = getattr(user, "agent", None) if hasattr(user, "agent") else None
    with translation.override(getattr(agent, "ui_language", "") or settings.LANGUAGE_CODE):
        message = _("This conversation is no longer open to you: it went to someone else.")
    return {"type": "watch.ended", "conversation": conversation_id, "message": message}


@database_sync_to_async
def _typing(user, conversation_id: int, on: bool) -> None:
    from .channels.webchat.ingest import agent_typing_notify

    agent = getattr(user, "agent", None) if hasattr(user, "agent") else None
    if agent is not None:
        agent_typing_notify(conversation_id=conversation_id, agent=agent, on=on)


# Close code for a frame that is not JSON we can decode: a 4xxx (the client's fault, as HTTP 400),
# never 1011, which says the server failed.
BAD_FRAME_CLOSE_CODE = 4400


class ConsoleConsumer(DisconnectWhenServerStops, ChannelLayerWatch, NoDatabaseHopPerEvent, AsyncJsonWebsocketConsumer):
    """``/ws/console/``: events for the signed-in agent (and supervisors)."""

    @classmethod
    async def decode_json(cls, text_data):
        # Bounded nesting and finite numbers (contactcenter.decoding), as every other door.
        return json_decode(text_data)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """A frame that is not decodable JSON (binary, too deep, NaN …) ends the socket with
        ``BAD_FRAME_CLOSE_CODE`` after an error frame saying why: the console never sends one, so
        whoever does is not the console."""
        if text_data is None:
            reason = "binary frames are not accepted"
        else:
            try:
                content = await self.decode_json(text_data)
            except UndecodableInput as exc:
                reason = str(exc)
            else:
                await self.receive_json(content, **kwargs)
                return
        await self.send_json({"type": "error", "code": 400, "reason": reason})
        await self._leave_and_close(BAD_FRAME_CLOSE_CODE)

    async def connect(self):
        user = self.scope.get("user")
        session = self.scope.get("session")
        session_key = session.session_key if session is not None else None
        groups = await _console_groups(user, session_key) if user is not None else None
        if groups is None:
            await self.close(code=4403)
            return
        self.joined = groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # One browser's tabs share the session: past the cap its oldest socket closes (4429).
        await claim_socket_slot(self, kind="console", owner=session_key)
        from .routing import console_presence as presence

        # This socket keeps its agent "seen" (services.presence): an agent none of whose consoles
        # is seen for the grace period is put offline by the tick.
        self.seen_at = presence.clock()
        self.agent_id, missed = await database_sync_to_async(presence.console_opened)(user=user, at=self.seen_at)
        await self.send_json({"type": "hello", "groups": len(groups)})
        if missed is not None:
            await self.send_json(missed)
        self.layer_watch_start()

    async def layer_watch_lost(self):
        """The layer no longer delivers to this socket: leave what can still be left (briefly: the
        layer may be down) and close with 4503; console.js reconnects and catches up by sequence."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._leave_groups(), timeout=2)
        self.joined, self.watching = [], None
        await self.close(code=LAYER_LOST_CLOSE_CODE)

    async def _seen(self, *, now: bool = False):
        """Refresh the agent's "seen" on the socket's traffic (at most every few seconds), and
        ``now`` when it closes: the grace runs from the last moment a console was there."""
        from .routing import console_presence as presence

        if getattr(self, "agent_id", None) is None:
            return
        at = presence.clock()
        if not now and at - self.seen_at < presence.SEEN_REFRESH_SECONDS:
            return
        self.seen_at = at
        # The cache only: off the database thread.
        await sync_to_async(presence.console_seen, thread_sensitive=False)(agent_id=self.agent_id, at=at)

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
        await self._leave_groups()
        await release_socket_slot(self)
        with suppress_and_log("the console's last seen"):
            await self._seen(now=True)

    async def socket_evicted(self, event):
        """More sockets of this session opened than the cap allows and this one is the oldest:
        the console says so and does not reconnect (console.js, code 4429)."""
        await self.send_json({"type": "error", "code": 429, "reason": "too many open consoles"})
        await self._leave_and_close(SOCKET_CAP_CLOSE_CODE)

    # -- watching a conversation: its events, its customer's timeline, who else is looking ------

    async def _unwatch(self):
        watching = getattr(self, "watching", None)
        if not watching:
            return
        self.watching = None
        await self._viewer(watching, "left")
        await self.channel_layer.group_discard(conversation_group(watching["conversation"]), self.channel_name)
        await self.channel_layer.group_discard(customer_group(watching["customer"]), self.channel_name)

    async def _viewer(self, watching: dict, state: str, *, reply: bool = False):
        await self.channel_layer.group_send(conversation_group(watching["conversation"]), viewer_message(
            sender=self.channel_name, reply=reply, conversation_id=watching["conversation"],
            agent_id=watching["agent"], name=watching["name"], state=state))

    async def _watch(self, conversation_id):
        watching = await _watchable(self.scope["user"], conversation_id)
        if watching is None:
            await self.send_json({"type": "error", "code": 404, "reason": "no such conversation", "for": "watch"})
            return
        current = getattr(self, "watching", None)
        if current and current["conversation"] == watching["conversation"]:
            return
        await self._unwatch()
        self.watching = watching
        await self.channel_layer.group_add(conversation_group(watching["conversation"]), self.channel_name)
        await self.channel_layer.group_add(customer_group(watching["customer"]), self.channel_name)
        await self.send_json({"type": "ack", "for": "watch", "conversation": watching["conversation"]})
        await self._viewer(watching, "viewing")

    async def _may_relay(self) -> bool:
        """Asked before relaying anything that reached this socket because it watches a
        conversation (its group and its customer's): access is checked on every such event, not
        only when watching starts, so an agent whose access ended (offer rejected or timed out,
        the conversation assigned or transferred to someone else) stops hearing it at the first
        event after, whatever ended it and whether or not the event saying so arrived. On refusal
        the socket leaves both groups and the console is told."""
        watching = getattr(self, "watching", None)
        if not watching:
            return False
        if await _still_watchable(watching):
            return True
        await self._unwatch()
        await self.send_json(await database_sync_to_async(_watch_ended_event)(self.scope["user"],
                                                                              watching["conversation"]))
        return False

    async def console_viewer(self, event):
        """Another console's viewer state. A newcomer's "viewing" is answered once with our own,
        so both sides know (no storage: presence in a conversation is ephemeral)."""
        if event.get("from") == self.channel_name:
            return
        watching = getattr(self, "watching", None)
        if not watching or watching["conversation"] != event["event"]["conversation"]:
            return
        if not await self._may_relay():
            return
        if watching["agent"] is not None and watching["agent"] == event["event"].get("agent"):
            return  # the same agent in another tab is not a collision
        await self.send_json(event["event"])
        if event["event"]["state"] == "viewing" and not event.get("reply"):
            await self._viewer(watching, "viewing", reply=True)

    async def receive_json(self, content, **kwargs):
        await self._seen()
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "watch":
            await self._watch(content.get("conversation"))
        elif kind == "unwatch":
            await self._unwatch()
        elif kind == "typing":
            watching = getattr(self, "watching", None)
            # Only for the conversation this socket was authorised to watch.
            if watching and str(content.get("conversation")) == str(watching["conversation"]):
                if not await self._may_relay():  # typing into a conversation no longer theirs: refused
                    await self.send_json({"type": "error", "code": 404, "reason": "no such conversation",
                                          "for": "typing"})
                    return
                on = bool(content.get("on"))
                await _typing(self.scope["user"], watching["conversation"], on)
                await self._viewer(watching, "typing" if on else "viewing", reply=True)
        elif kind in _ACTIONS:
            await self.send_json(await _act(self.scope["user"], kind, content))
        else:
            await self.send_json({"type": "error", "code": 400, "reason": "unknown frame type"})

    async def console_signed_out(self, event):
        """Its session signed out (in this tab or another of the browser): the socket was authorised
        by a session that no longer exists, so it must stop hearing customers' messages. 4401 tells
        the console to go to the login page instead of reconnecting. Other browsers of the same
        user keep their own sessions and sockets."""
        await self.send_json(event["event"])
        await self._leave_and_close(4401)

    async def console_reauthenticate(self, event):
        """The user's password, active flag or roles changed: what this socket was authorised for
        when it connected may no longer hold. 4001 makes the console reconnect as after any drop;
        connecting authenticates again (channels.auth checks the session's password hash, the
        backend an inactive user, _console_groups the roles), so only a session still good for
        the console gets back in."""
        await self._leave_and_close(4001)

    async def _leave_and_close(self, code: int):
        # Leave every group now, not when the client's close handshake comes back (disconnect):
        # until then events would still be relayed to the socket.
        await self._leave_groups()
        self.agent_id = None  # no longer "seen": the tick is not to count this socket
        await self.close(code=code)

    async def _leave_groups(self):
        """Leave the session's groups and what it watches; never raises (a layer that refused is
        retried, then logged: socket_cleanup.leave_groups)."""
        groups = list(getattr(self, "joined", []))
        watching = getattr(self, "watching", None)
        self.joined, self.watching = [], None
        if watching:
            with suppress_and_log("telling the conversation this console left"):
                await self._viewer(watching, "left")
            groups += [conversation_group(watching["conversation"]), customer_group(watching["customer"])]
        await leave_groups(self.channel_layer, self.channel_name, groups)

    async def console_event(self, event):
        """Relay an event built by a service (``{"type": "console.event", "event": {...}}``)."""
        await self.send_json(event["event"])

    async def console_watched(self, event):
        """An event that reached this socket through the groups of the conversation it watches
        (``events.watched_handler``): relayed only while access holds."""
        if await self._may_relay():
            await self.send_json(event["event"])
